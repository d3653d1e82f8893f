//! Process lifecycle: graceful shutdown, TLS on the listener, structured logs.

use crate::harness::*;
use std::time::{Duration, Instant};

fn config(upstream: &Upstream) -> String {
    format!(
        "upstreams:\n  api:\n    servers: [{}]\nroutes:\n  - path: /\n    auth: none\n    upstream: api\n  - path: /private\n    scopes: [a:read]\n    upstream: api\n",
        upstream.addr
    )
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_stops_accepting() {
    let upstream = Upstream::start().await;
    let mut gw = GatewayBuilder::new(&config(&upstream)).start().await;
    let url = gw.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    // let the request reach the upstream, then ask the gateway to stop
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.requests().is_empty() {
        assert!(Instant::now() < deadline, "the slow request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let refused = tokio::net::TcpStream::connect(&addr).await.is_err();
    let response = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("/slow"));
    assert!(refused, "new connections are refused once shutdown started");
    // the drain ends when the last request is done, well before the 5 s grace period
    let finished = Instant::now();
    let (status, _gw) = tokio::task::spawn_blocking(move || {
        let s = gw.wait_exit(Duration::from_secs(10));
        (s, gw)
    })
    .await
    .unwrap();
    let status = status.expect("the gateway exits once drained");
    assert!(status.success(), "a graceful stop exits 0: {status}");
    assert!(finished.elapsed() < Duration::from_secs(2), "exited {:?} after the last response", finished.elapsed());
}

#[tokio::test]
async fn tls_listener_serves_https() {
    let upstream = Upstream::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let body = format!(
        "tls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n{}",
        config(&upstream)
    );
    let gw = GatewayBuilder::new(&body)
        .file("tls/cert.pem", &cert.cert.pem())
        .file("tls/key.pem", &cert.signing_key.serialize_pem())
        .start()
        .await;
    let https = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = gw.url("/hello").replace("http://", "https://");
    let r = https.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests()[0].header("x-forwarded-proto"), Some("https"));
    // plain HTTP on the TLS port gets no answer
    assert!(client().get(gw.url("/hello")).send().await.is_err());
}

#[tokio::test]
async fn json_access_log_without_tokens() {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&upstream)).start().await;
    let token = gw.token("mm-client", "a:read");
    let r = client().get(gw.url("/private/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bad = format!("{token}x");
    let r = client().get(gw.url("/private/1")).bearer_auth(&bad).send().await.unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("oada_gateway::access") && l.contains("mm-client"))
        .unwrap_or_else(|| panic!("no access log line for the request:\n{logs}"));
    for field in ["route=", "method=", "path=", "status=200", "client_id=", "upstream=", "latency_ms="] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(!logs.contains(&token[..40]), "a token appeared in the log");
}

#[tokio::test]
async fn json_log_format() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Run with --log-format json through the same harness by pointing at its config.
    let gw = GatewayBuilder::new(&config(&upstream)).start().await;
    let port = free_port();
    let admin = free_port();
    let yaml = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace(&gw.base.replace("http://", ""), &format!("127.0.0.1:{port}"))
        .replace(&gw.admin.replace("http://", ""), &format!("127.0.0.1:{admin}"));
    let keys = gw.dir.path().join("keys");
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::copy(keys.join("gw.pem"), dir.path().join("keys/gw.pem")).unwrap();
    let path = write(dir.path(), "gateway.yaml", &yaml);
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oada-gateway"))
        .args(["--log-format", "json", "--config"])
        .arg(&path)
        .stderr(log)
        .spawn()
        .unwrap();
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(format!("http://127.0.0.1:{port}/x")).send().await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let access: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "oada_gateway::access")
        .unwrap_or_else(|| panic!("no JSON access line in\n{text}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["path"], "/x");
    assert_eq!(access["method"], "GET");
}
