//! Flaky upstreams: pooled connections closed under the gateway, resets, malformed responses,
//! and what ends up in the logs when they happen.

use crate::harness::*;
use std::time::Duration;

fn config(addr: &str, extra: &str) -> String {
    format!(
        "{extra}\nupstreams:\n  api:\n    servers: [{addr}]\n    health_check: {{type: none}}\n    read_timeout: 1s\nroutes:\n  - path: /\n    auth: none\n    upstream: api\n  - path: /protected\n    scopes: [weather.observations:read]\n    upstream: api\n"
    )
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_retried_on_a_fresh_one() {
    // answers as if keeping the connection alive, then closes it a moment later, as a server
    // with a short keep-alive timeout does: the next request on the pooled connection races the
    // close
    let upstream =
        RawUpstream::start(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), Some(Duration::from_millis(30)))).await;
    let gw = GatewayBuilder::new(&config(&upstream.addr.to_string(), "")).start().await;
    let http = client();
    for i in 0..20 {
        let r = http.get(gw.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} failed although the only server is healthy");
    }
    assert_eq!(upstream.requests().len(), 20, "each request reached the upstream exactly once");
    let reused = gw.metric(r#"oada_gateway_upstream_failures_total{kind="reused_connection",upstream="api"}"#).await;
    assert!(reused >= 1.0, "the dead pooled connections are counted as such");
    assert_eq!(gw.metric(r#"oada_gateway_upstream_failures_total{kind="no_healthy_server",upstream="api"}"#).await, 0.0);
}

#[tokio::test]
async fn a_post_on_a_dead_pooled_connection_is_not_replayed() {
    let upstream =
        RawUpstream::start(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), Some(Duration::from_millis(30)))).await;
    let gw = GatewayBuilder::new(&config(&upstream.addr.to_string(), "")).start().await;
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http.post(gw.url("/w")).body("x").send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    // a non-idempotent request is never sent twice; it may fail, and says so
    assert!(statuses.iter().all(|s| *s == 200 || *s == 502), "{statuses:?}");
    assert!(upstream.requests().len() <= 6);
}

#[tokio::test]
async fn malformed_upstream_response_is_a_502_without_its_headers_in_the_log() {
    let upstream = RawUpstream::start(|_| {
        (b"HTTP/1.1 200 OK\r\nSet-Cookie: session=UPSTREAM-SECRET-COOKIE\r\nthis is not a header\r\n\r\n".to_vec(), Some(Duration::ZERO))
    })
    .await;
    let gw = GatewayBuilder::new(&config(&upstream.addr.to_string(), "")).start().await;
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let logs = gw.logs();
    assert!(!logs.contains("UPSTREAM-SECRET-COOKIE"), "the upstream's cookie is in the log:\n{logs}");
    assert_eq!(
        gw.metric(r#"oada_gateway_upstream_failures_total{kind="invalid_response",upstream="api"}"#).await,
        1.0
    );
}

#[tokio::test]
async fn query_tokens_never_reach_the_logs_on_502_or_504() {
    // an upstream that never answers (504), then none at all (502)
    let silent = RawUpstream::start(|_| (Vec::new(), None)).await;
    let gw = GatewayBuilder::new(&config(&silent.addr.to_string(), "bearer:\n  allow_query_token: true")).start().await;
    let token = gw.token("client-1", "weather.observations:read");
    let r = client()
        .get(gw.url(&format!("/protected/x?access_token={token}&station=ames")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    drop(silent);
    let down = free_port();
    let gw2 = GatewayBuilder::new(&config(&format!("127.0.0.1:{down}"), "bearer:\n  allow_query_token: true")).start().await;
    let token2 = gw2.token("client-1", "weather.observations:read");
    let r = client()
        .get(gw2.url(&format!("/protected/y?access_token={token2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    for (gw, token) in [(&gw, &token), (&gw2, &token2)] {
        eventually_within("the access log line", Duration::from_secs(5), || async { gw.logs().contains("oada_gateway::access") }).await;
        let logs = gw.logs();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token is in the log:\n{logs}");
        assert!(!logs.contains("access_token="), "a query token is in the log:\n{logs}");
        assert!(logs.contains("Fail to proxy") || logs.contains("\"status\":50") || logs.contains("status=50"), "the failure is still logged:\n{logs}");
    }
}

#[tokio::test]
async fn credentials_sent_by_clients_are_never_logged() {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&upstream.addr.to_string(), "")).start().await;
    let secret = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.TOP-SECRET-SIGNATURE";
    // refused token, malformed request, oversized header, a cookie
    let http = client();
    let _ = http.get(gw.url("/protected/a?access_token=QUERY-SECRET")).send().await;
    let _ = http.get(gw.url("/protected/a")).header("Authorization", secret).send().await;
    let _ = http.get(gw.url("/x")).header("Cookie", "sid=COOKIE-SECRET").send().await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(format!("GET /x?password=PASS-SECRET HTTP/1.1\r\nHost: x\r\nAuthorization: {secret}\r\nBad Header\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let _ = conn.read_until_closed(Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gw.logs();
    for needle in ["TOP-SECRET-SIGNATURE", "QUERY-SECRET", "COOKIE-SECRET", "PASS-SECRET"] {
        assert!(!logs.contains(needle), "{needle} is in the log:\n{logs}");
    }
}

#[tokio::test]
async fn an_upstream_reset_mid_response_is_a_502_and_the_gateway_stays_up() {
    let upstream = RawUpstream::start(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec(), Some(Duration::ZERO))).await;
    let gw = GatewayBuilder::new(&config(&upstream.addr.to_string(), "")).start().await;
    for _ in 0..5 {
        // the headers went out already: the client sees a truncated body, never a hang
        let r = client().get(gw.url("/x")).send().await;
        if let Ok(r) = r {
            assert!(r.bytes().await.is_err(), "a truncated body must not look complete");
        }
    }
    let ok = client().get(format!("{}/healthz", gw.admin)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
