//! Hostile clients at the connection level: oversized and unterminated heads, slowloris, idle
//! keep-alive connections, slow bodies, connection floods. Each case is bounded in time.

use crate::harness::*;
use std::time::{Duration, Instant};

async fn gateway(upstream: &Upstream, server: &str) -> Gateway {
    GatewayBuilder::new(&open_route(upstream.addr)).server(server).start().await
}

#[tokio::test]
async fn unterminated_huge_header_is_431_after_the_budget_not_a_megabyte() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "max_request_header_bytes: 16KiB").await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Fill: ").await.unwrap();
    // keep writing header bytes; the gateway must stop reading and answer long before 1 MB
    let chunk = vec![b'a'; 4096];
    let mut sent = 0;
    for _ in 0..256 {
        if conn.send(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (response, closed) = conn.read_until_closed(Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 431, "sent {sent} bytes; got: {response}");
    assert!(response.contains("\"error\""), "JSON error body: {response}");
    assert!(closed, "the connection is closed after a 431");
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
    assert_eq!(gw.metric(r#"oada_gateway_downstream_closes_total{reason="header_too_large"}"#).await, 1.0);
}

#[tokio::test]
async fn complete_request_with_a_huge_header_value_is_not_forwarded() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "").await;
    let big = "v".repeat(1024 * 1024);
    let response = client().get(gw.url("/x")).header("X-Big", &big).send().await;
    match response {
        Ok(r) => assert_eq!(r.status(), 431),
        // the gateway may close before the client has written everything
        Err(e) => assert!(e.is_request() || e.is_connect() || e.to_string().contains("connection"), "{e}"),
    }
    assert!(upstream.requests().is_empty(), "a 1 MB header value must not be forwarded");
}

#[tokio::test]
async fn long_header_line_is_431_and_long_request_line_414() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "max_request_header_bytes: 64KiB\nmax_request_header_line_bytes: 4KiB").await;
    let r = client().get(gw.url("/x")).header("X-Long", "v".repeat(8000)).send().await.unwrap();
    assert_eq!(r.status(), 431);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let r = client().get(gw.url(&format!("/{}", "p".repeat(8000)))).send().await.unwrap();
    assert_eq!(r.status(), 414);
    // many header fields each within the line limit, together over the total
    let mut request = client().get(gw.url("/x"));
    for i in 0..30 {
        request = request.header(format!("X-F{i}"), "v".repeat(3000));
    }
    assert_eq!(request.send().await.unwrap().status(), 431);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn slowloris_trickling_a_header_gets_408_at_the_deadline() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "header_timeout: 1s").await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    let started = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // one byte every 200 ms: every read restarts an idle timer, but not a deadline
    let mut response = String::new();
    for byte in request.iter() {
        if conn.send(&[*byte]).await.is_err() {
            break;
        }
        let (got, closed) = conn.read_until_closed(Duration::from_millis(200)).await;
        response.push_str(&got);
        if closed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still open after 5 s of trickling");
    }
    let elapsed = started.elapsed();
    assert_eq!(status_of(&response), 408, "got: {response}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    assert_eq!(gw.metric(r#"oada_gateway_downstream_closes_total{reason="header_timeout"}"#).await, 1.0);
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "keepalive_timeout: 1s").await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let first = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(&first), 200);
    let started = Instant::now();
    let (rest, closed) = conn.read_until_closed(Duration::from_secs(5)).await;
    assert!(closed, "an idle keep-alive connection must be closed");
    assert!(rest.is_empty(), "closed quietly, without a response: {rest}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    // a connection that never sends anything is closed at the header deadline
    let mut silent = RawConn::connect(&gw.addr()).await;
    let (_, closed) = silent.read_until_closed(Duration::from_secs(15)).await;
    assert!(closed);
}

/// Sends a body one byte per `pause` until the gateway answers or closes; returns the answer and
/// how long it took.
async fn trickle_body(conn: &mut RawConn, pause: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut response = String::new();
    for _ in 0..100 {
        if conn.send(b"a").await.is_err() {
            break;
        }
        let (got, closed) = conn.read_until_closed(pause).await;
        response.push_str(&got);
        if closed || !got.is_empty() {
            break;
        }
    }
    (response, started.elapsed())
}

#[tokio::test]
async fn slow_body_on_a_proxied_route_gets_408_at_the_deadline() {
    // an upstream that answers only once it has the whole body
    let upstream = RawUpstream::start(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), None)).await;
    let gw = GatewayBuilder::new(&open_route(upstream.addr))
    .server("body_timeout: 1s")
    .start()
    .await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").await.unwrap();
    let (response, elapsed) = trickle_body(&mut conn, Duration::from_millis(200)).await;
    assert_eq!(status_of(&response), 408, "got: {response}");
    assert!(elapsed < Duration::from_secs(4), "answered after {elapsed:?}");
}

#[tokio::test]
async fn slow_body_to_the_token_endpoint_gets_408_at_the_deadline() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "body_timeout: 1s").await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let (response, elapsed) = trickle_body(&mut conn, Duration::from_millis(200)).await;
    assert_eq!(status_of(&response), 408, "got: {response}");
    assert!(elapsed < Duration::from_secs(4), "answered after {elapsed:?}");
}

#[tokio::test]
async fn connections_per_address_and_in_total_are_limited() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "max_connections: 6\nmax_connections_per_address: 3").await;
    // the harness's start-up probes connect from 127.0.0.1 too: on a loaded machine one can have
    // been refused already, so count from here
    let per_address = r#"oada_gateway_downstream_closes_total{reason="too_many_connections_per_address"}"#;
    let in_total = r#"oada_gateway_downstream_closes_total{reason="too_many_connections"}"#;
    let (per_address_before, in_total_before) = (gw.metric(per_address).await, gw.metric(in_total).await);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect_from(&gw.addr(), "127.0.0.1").await;
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert_eq!(status_of(&c.read_response(Duration::from_secs(5)).await.unwrap()), 200);
        held.push(c);
    }
    let mut fourth = RawConn::connect_from(&gw.addr(), "127.0.0.1").await;
    let (response, closed) = fourth.read_until_closed(Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 503, "got: {response}");
    assert!(response.to_ascii_lowercase().contains("retry-after"));
    assert!(closed);
    // another address still gets in, up to the total
    for _ in 0..3 {
        let mut c = RawConn::connect_from(&gw.addr(), "127.0.0.2").await;
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert_eq!(status_of(&c.read_response(Duration::from_secs(5)).await.unwrap()), 200);
        held.push(c);
    }
    let mut over_total = RawConn::connect_from(&gw.addr(), "127.0.0.3").await;
    let (response, _) = over_total.read_until_closed(Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 503);
    assert_eq!(gw.metric(per_address).await - per_address_before, 1.0);
    assert_eq!(gw.metric(in_total).await - in_total_before, 1.0);
    // closing connections gives the slots back
    held.clear();
    eventually_within("slots released", Duration::from_secs(5), || async {
        gw.metric("oada_gateway_downstream_connections").await == 0.0
    })
    .await;
    let mut again = RawConn::connect_from(&gw.addr(), "127.0.0.1").await;
    again.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(status_of(&again.read_response(Duration::from_secs(5)).await.unwrap()), 200);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, "").await;
    let mut conn = RawConn::connect(&gw.addr()).await;
    conn.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for path in ["/one", "/two", "/three"] {
        let response = conn.read_response(Duration::from_secs(5)).await.expect("a response per request");
        assert_eq!(status_of(&response), 200, "{response}");
        assert!(response.contains(&format!("\"path\":\"{path}\"")), "responses in request order: {response}");
    }
}

/// Each of 1,500 connections holds a maximal partial head (one byte short of the budget);
/// the gateway's memory stays bounded by the budget, not by what the clients could send.
#[tokio::test]
async fn memory_with_1500_maximal_partial_heads_is_bounded() {
    let upstream = Upstream::start().await;
    let budget = 32 * 1024;
    let gw = gateway(
        &upstream,
        "max_request_header_bytes: 32KiB\nheader_timeout: 60s\nmax_connections_per_address: 2000\nmax_connections: 5000",
    )
    .await;
    let before = gw.rss_bytes();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Fill: ".to_vec();
    head.resize(budget - 1, b'a');
    let mut conns = Vec::new();
    for i in 0..1500 {
        let source = format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250);
        let mut c = RawConn::connect_from(&gw.addr(), &source).await;
        c.send(&head).await.unwrap();
        conns.push(c);
    }
    // let the gateway read everything that was sent
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = gw.rss_bytes();
    let per_connection = during.saturating_sub(before) / 1500;
    eprintln!(
        "RSS before {} MB, with 1500 partial heads of {} KiB: {} MB ({} KiB per connection)",
        before >> 20,
        budget >> 10,
        during >> 20,
        per_connection >> 10
    );
    assert!(
        per_connection < 3 * budget as u64,
        "each partial head costs {per_connection} bytes, over 3x the {budget}-byte budget"
    );
    // none of them was answered or forwarded
    assert!(upstream.requests().is_empty());
    drop(conns);
}
