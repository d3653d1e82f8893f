//! Forwarding: round robin, retry on another server, health checks, 502/504, readiness.

use crate::harness::*;
use std::time::{Duration, Instant};

fn config(servers: &[&Upstream], extra_upstream: &str) -> String {
    let list: Vec<String> = servers.iter().map(|u| u.addr.to_string()).collect();
    format!(
        r#"
upstreams:
  api:
    servers: [{}]
    health_check: {{type: http, path: /health, interval: 200ms, timeout: 200ms}}
    connect_timeout: 500ms
{extra_upstream}
routes:
  - path: /
    auth: none
    upstream: api
"#,
        list.join(", ")
    )
}

async fn get(gw: &Gateway, path: &str) -> reqwest::Response {
    client().get(gw.url(path)).send().await.unwrap()
}

/// Polls `check` every 50 ms for up to 5 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gauge(upstream: &Upstream) -> String {
    format!("oada_gateway_upstream_healthy{{server=\"{}\",upstream=\"api\"}}", upstream.addr)
}

#[tokio::test]
async fn round_robin_then_failover_when_one_server_is_down() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&[&a, &b], "")).start().await;
    eventually("both servers healthy", || async { gw.metric(&gauge(&a)).await == 1.0 && gw.metric(&gauge(&b)).await == 1.0 }).await;
    for _ in 0..6 {
        assert_eq!(get(&gw, "/x").await.status(), 200);
    }
    let on_a = a.requests().iter().filter(|r| r.path_and_query == "/x").count();
    let on_b = b.requests().iter().filter(|r| r.path_and_query == "/x").count();
    assert_eq!(on_a + on_b, 6);
    assert!(on_a >= 2 && on_b >= 2, "round robin spreads requests: a={on_a} b={on_b}");

    // b goes down; before the health check notices, retries on a keep every request whole
    b.stop();
    for i in 0..20 {
        let r = get(&gw, &format!("/after-{i}")).await;
        assert_eq!(r.status(), 200, "request {i} failed while one server was down");
    }
    eventually("b marked unhealthy", || async { gw.metric(&gauge(&b)).await == 0.0 }).await;
    assert_eq!(gw.metric(&gauge(&a)).await, 1.0);
    let ready = client().get(format!("{}/readyz", gw.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "one healthy server keeps the gateway ready");

    // b comes back on the same address
    let b2 = Upstream::start_on(b.addr).await;
    eventually("b healthy again", || async { gw.metric(&gauge(&b2)).await == 1.0 }).await;
}

#[tokio::test]
async fn all_servers_down_is_a_502_json_and_not_ready() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&[&a, &b], "")).start().await;
    eventually("ready", || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 200
    })
    .await;
    a.stop();
    b.stop();
    let r = get(&gw, "/x").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(body["error_description"].as_str().unwrap().contains("api"));
    eventually("not ready", || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 503
    })
    .await;
    assert_eq!(gw.metric(&gauge(&a)).await, 0.0);
    assert_eq!(gw.metric(&gauge(&b)).await, 0.0);
    // with no healthy server left, the answer is still a JSON 502
    let r = get(&gw, "/y").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "bad_gateway");
    assert!(gw.metric("oada_gateway_upstream_failures_total{kind=\"no_healthy_server\",upstream=\"api\"}").await >= 1.0);
}

#[tokio::test]
async fn slow_upstream_is_a_504_json() {
    let a = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&[&a], "    read_timeout: 300ms")).start().await;
    let started = Instant::now();
    let r = get(&gw, "/slow?ms=3000").await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2), "the read timeout applies");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");
    // a fast request still works
    assert_eq!(get(&gw, "/slow?ms=10").await.status(), 200);
}

#[tokio::test]
async fn readiness_reports_each_upstream() {
    let a = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&[&a], "")).start().await;
    eventually("ready", || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 200
    })
    .await;
    let body: serde_json::Value = client()
        .get(format!("{}/readyz", gw.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["upstreams"]["api"]["healthy_servers"][0], a.addr.to_string());
    let health = client().get(format!("{}/healthz", gw.admin)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
