//! Requests an upstream could read differently from the gateway: absolute-form targets, missing
//! or conflicting framing, path tricks, TRACE, `Expect`, request smuggling.

use crate::harness::*;
use std::time::Duration;

fn config(upstream: &Upstream) -> String {
    format!(
        r#"
upstreams:
  api:
    servers: [{}]
    health_check: {{type: none}}
routes:
  - path: /health
    auth: none
    upstream: api
  - path: /open
    auth: none
    upstream: api
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
"#,
        upstream.addr
    )
}

async fn setup() -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&upstream)).start().await;
    (upstream, gw)
}

async fn exchange(gw: &Gateway, request: &str) -> String {
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(request.as_bytes()).await.unwrap();
    conn.read_response(Duration::from_secs(5)).await.unwrap_or_default()
}

#[tokio::test]
async fn absolute_form_target_reaches_the_upstream_in_origin_form() {
    let (upstream, gw) = setup().await;
    let host = gw.addr();
    let response = exchange(&gw, &format!("GET http://{host}/open/x?q=1 HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line(), "GET /open/x?q=1 HTTP/1.1", "origin-form on the wire");
    // a target naming the host that Host names too: still origin-form on the wire
    let response = exchange(&gw, "GET http://evil.example/open/y HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].request_line(), "GET /open/y HTTP/1.1", "{}", seen[1].raw_head);
    assert_eq!(seen[1].header("host"), Some("evil.example"));
    // a target naming another host than Host is refused outright
    let response = exchange(&gw, &format!("GET http://evil.example/open/x HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn host_is_required_on_http11_and_supplied_for_http10() {
    let (upstream, gw) = setup().await;
    let response = exchange(&gw, "GET /open HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(upstream.requests().is_empty());
    let response = exchange(&gw, "GET /open HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("host"), Some(gw.addr().as_str()), "the gateway's own host");
}

#[tokio::test]
async fn repeated_content_length_is_collapsed_or_refused() {
    let (upstream, gw) = setup().await;
    for cl in ["Content-Length: 5\r\nContent-Length: 5", "Content-Length: 5, 5"] {
        let response = exchange(&gw, &format!("POST /open HTTP/1.1\r\nHost: x\r\n{cl}\r\n\r\nhello")).await;
        assert_eq!(status_of(&response), 200, "{cl}: {response}");
    }
    for seen in upstream.requests() {
        assert_eq!(seen.header_count("content-length"), 1, "one Content-Length upstream");
        assert_eq!(seen.header("content-length"), Some("5"));
    }
    let response = exchange(&gw, "POST /open HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn smuggling_with_content_length_and_transfer_encoding_does_not_desync() {
    let (upstream, gw) = setup().await;
    // CL.TE: the chunked body ends at `0`; what follows must not become a second request
    let smuggled = "POST /open HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /observations HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(smuggled.as_bytes()).await.unwrap();
    let (_, _) = conn.read_until_closed(Duration::from_secs(3)).await;
    let paths: Vec<String> = upstream.requests().iter().map(|r| r.path_and_query.clone()).collect();
    assert!(!paths.iter().any(|p| p == "/observations"), "a protected path was smuggled through: {paths:?}");
}

#[tokio::test]
async fn path_tricks_are_refused_before_routing() {
    let (upstream, gw) = setup().await;
    for path in [
        "/health/..;/observations",
        "/health/..;jsessionid=x/observations",
        "/health/.;/observations",
        "/health/%2e%2e/observations",
        "/health/%252e%252e/observations",
        "/health/%c0%ae%c0%ae/observations",
        "/health/%u002e%u002e/observations",
        "/health/..%2fobservations",
        "/health/..%5cobservations",
    ] {
        let response = exchange(&gw, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert_eq!(status_of(&response), 400, "{path}: {response}");
    }
    assert!(upstream.requests().is_empty(), "nothing reached the upstream");
    // a path parameter does not make a protected route an open one
    let response = exchange(&gw, "GET /observations;jsessionid=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&response), 401, "{response}");
}

#[tokio::test]
async fn trace_is_refused() {
    let (upstream, gw) = setup().await;
    let response = exchange(&gw, "TRACE /open HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n").await;
    assert_eq!(status_of(&response), 405, "{response}");
    assert!(!response.contains("a=b"));
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_gateway() {
    let (upstream, gw) = setup().await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"POST /open HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").await.unwrap();
    let interim = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(&interim), 100, "{interim}");
    conn.send(b"hello").await.unwrap();
    let response = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("expect"), None, "Expect is not forwarded");

    // a request refused by its token never gets a 100 Continue
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"POST /observations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").await.unwrap();
    let response = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(&response), 401, "{response}");
}

#[tokio::test]
async fn unsolicited_switching_protocols_from_the_upstream_is_a_502() {
    let upstream = RawUpstream::start(|_| {
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(), None)
    })
    .await;
    let gw = GatewayBuilder::new(&open_route(upstream.addr)).start().await;
    let response = exchange(&gw, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&response), 502, "{response}");
    assert!(response.contains("switched protocols"), "{response}");
}
