//! Live reload and graceful upgrade, under load: the config changes (routes, partners, upstream
//! servers, signing keys) while keep-alive clients keep sending, and none of their requests may
//! fail; a second process takes the listeners over from the first the same way.

use crate::harness::*;
use oada_gateway::keys::{generate, KeyRing, SigningKey};
use oada_gateway::token::TokenIssuer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const READ: &str = "weather.observations:read";
const MM_SECRET: &str = "mm-secret-0123456789abcdef";
const GONE_SECRET: &str = "gone-secret-0123456789abcd";

fn body(servers: &str, with_gone: bool, stations_route: bool) -> String {
    let mut text = String::from(
        "clients:\n  - name: moisturemapper\n    client_id: mm-1\n    client_secret_env: MM_SECRET\n    scopes: [weather.observations:read]\n",
    );
    if with_gone {
        text += "  - name: gone\n    client_id: gone-1\n    client_secret_env: GONE_SECRET\n    scopes: [weather.observations:read]\n";
    }
    text += &format!("upstreams:\n  weather:\n    servers: [{servers}]\n    health_check: {{type: tcp, interval: 1s}}\nroutes:\n");
    text += "  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: weather\n";
    if stations_route {
        text += "  - path: /stations\n    scopes: [weather.observations:read]\n    upstream: weather\n";
    }
    text
}

/// The config file with `body` below the generated head (listeners, issuer, keys, server).
fn with_body(gw: &Gateway, body: &str) -> String {
    let text = gw.config_text();
    let head_end = text.find("clients:").expect("the head ends where the body starts");
    format!("{}{body}", &text[..head_end])
}

async fn status(gw: &Gateway, path: &str, token: &str) -> (u16, String) {
    let r = client().get(gw.url(path)).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn reloads_under_load_change_routes_partners_servers_and_keys_without_failing_a_request() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = GatewayBuilder::new(&body(&a.addr.to_string(), true, false))
        .env("MM_SECRET", MM_SECRET)
        .env("GONE_SECRET", GONE_SECRET)
        .start()
        .await;
    let mm = gw.client_credentials_token("mm-1", MM_SECRET, Some(READ)).await;
    let gone = gw.client_credentials_token("gone-1", GONE_SECRET, Some(READ)).await;
    assert_eq!(status(&gw, "/observations", &gone).await.0, 200, "the partner's token works (and is cached)");
    assert_eq!(status(&gw, "/stations", &mm).await.0, 404, "no such route yet");
    let first_hash = gw.config_hash().await;

    let started = Instant::now();
    let load = Load::start_raw(gw.base.trim_start_matches("http://").to_string(), "/observations", Some(mm.clone()), 16);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // 1. a route added
    gw.write_config(&with_body(&gw, &body(&a.addr.to_string(), true, true)));
    let answer = gw.reload_ok("route added").await;
    assert_eq!(answer["changed"], true);
    assert_ne!(answer["hash"], first_hash.as_str());
    assert_eq!(status(&gw, "/stations", &mm).await.0, 200, "the new route is served at once");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 2. a partner removed: its cached token is refused from the next request
    gw.write_config(&with_body(&gw, &body(&a.addr.to_string(), false, true)));
    gw.reload_ok("partner removed").await;
    let (code, text) = status(&gw, "/observations", &gone).await;
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("no longer configured"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 3. the upstream server swapped: requests go to the new one
    gw.write_config(&with_body(&gw, &body(&b.addr.to_string(), false, true)));
    gw.reload_ok("server swapped").await;
    let at_a = a.requests().len();
    eventually_within("requests reach the new server", Duration::from_secs(3), || async { !b.requests().is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.requests().len() <= at_a + 16, "after the swap only requests already in flight reached the old server");

    // 4. a signing key added: tokens it signs are accepted
    let second_pem = generate::private_key_pem(jsonwebtoken::Algorithm::EdDSA).unwrap();
    std::fs::write(gw.dir.path().join("keys/second.pem"), &second_pem).unwrap();
    let second = TokenIssuer::new(
        Arc::new(KeyRing::new(vec![SigningKey::from_pem("second", jsonwebtoken::Algorithm::EdDSA, second_pem.as_bytes()).unwrap()])),
        &gw.issuer,
        &gw.issuer,
        Duration::from_secs(600),
    );
    let mut claims = gw.claims("weather.observations:read");
    claims.partner = Some("moisturemapper".into());
    let by_second = second.sign(&claims).unwrap();
    assert_eq!(status(&gw, "/observations", &by_second).await.0, 401, "not yet a key of the gateway");
    let text = gw.config_text().replace(
        "    private_key_file: keys/gw.pem\n",
        "    private_key_file: keys/gw.pem\n  - kid: second\n    alg: EdDSA\n    private_key_file: keys/second.pem\n",
    );
    gw.write_config(&text);
    gw.reload_ok("key added").await;
    assert_eq!(status(&gw, "/observations", &by_second).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 5. a broken file: refused with every error, the running config keeps serving
    let in_force = gw.config_hash().await;
    let good = gw.config_text();
    gw.write_config(&good.replace("scopes: [weather.observations:read]\n    upstream: weather", "scopes: [weather.observations:read]\n    upstream: nowhere"));
    let (code, answer) = gw.reload().await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_config");
    let errors = answer["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains("nowhere")), "{answer}");
    assert_eq!(gw.config_hash().await, in_force, "the running config stays");
    assert_eq!(status(&gw, "/stations", &mm).await.0, 200);
    gw.write_config(&good);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let result = load.stop().await;
    let elapsed = started.elapsed();
    eprintln!(
        "reload under load: {} requests in {:.1}s over 16 keep-alive connections, {} failed",
        result.ok,
        elapsed.as_secs_f64(),
        result.failures.len()
    );
    assert!(result.failures.is_empty(), "failed requests: {:?}", &result.failures[..result.failures.len().min(5)]);
    assert!(result.ok > 1000, "the load ran ({} requests)", result.ok);
    assert_eq!(gw.metric("oada_gateway_config_reloads_total{result=\"ok\"}").await, 4.0);
    assert_eq!(gw.metric("oada_gateway_config_reloads_total{result=\"error\"}").await, 1.0);
    let info = format!("oada_gateway_config_info{{hash=\"{in_force}\"}}");
    assert_eq!(gw.metric(&info).await, 1.0, "config_info names the config in force");
    assert!(gw.logs().contains("config reload refused"), "the refusal is logged");
}

#[tokio::test]
async fn sighup_reloads_and_settings_that_need_a_restart_are_reported_and_kept() {
    let a = Upstream::start().await;
    let gw = GatewayBuilder::new(&body(&a.addr.to_string(), false, false))
        .env("MM_SECRET", MM_SECRET)
        .start()
        .await;
    let mm = gw.client_credentials_token("mm-1", MM_SECRET, Some(READ)).await;
    let before = gw.config_hash().await;
    let other_port = free_port();
    let old_listen = gw.base.trim_start_matches("http://").to_string();
    let text = with_body(&gw, &body(&a.addr.to_string(), false, true)).replace(
        &format!("listen: {old_listen}\n"),
        &format!("listen: 127.0.0.1:{other_port}\n"),
    );
    gw.write_config(&text);
    gw.signal("HUP");
    eventually_within("SIGHUP reloads the config", Duration::from_secs(5), || async { gw.config_hash().await != before }).await;
    assert_eq!(status(&gw, "/stations", &mm).await.0, 200, "the live part applied");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", other_port)).await.is_err(), "the new listener is not opened");
    let logs = gw.logs();
    assert!(logs.contains("take a restart") && logs.contains("listen"), "{logs}");
    // asked again: the same report
    let answer = gw.reload_ok("again").await;
    assert_eq!(answer["needs_restart"], serde_json::json!(["listen"]));
    assert_eq!(answer["changed"], false);
}

/// A second process started with `--upgrade` takes over the listeners when the first gets
/// SIGQUIT; clients with keep-alive connections never see a failure.
#[tokio::test]
async fn graceful_upgrade_hands_the_listeners_to_a_new_process_without_failing_a_request() {
    let a = Upstream::start().await;
    let old = GatewayBuilder::new(&body(&a.addr.to_string(), false, false))
        .server("upgrade_socket: upgrade.sock")
        .env("MM_SECRET", MM_SECRET)
        .start()
        .await;
    let mm = old.client_credentials_token("mm-1", MM_SECRET, Some(READ)).await;
    let load = Load::start_raw(old.base.trim_start_matches("http://").to_string(), "/observations", Some(mm.clone()), 8);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log_path = old.dir.path().join("new.log");
    let mut new = std::process::Command::new(gateway_bin())
        .arg("--config")
        .arg(&old.config_path)
        .arg("--upgrade")
        .env("RUST_LOG", "info")
        .env("MM_SECRET", MM_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let new_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually_within("the new process waits for the sockets", Duration::from_secs(10), || async {
        new_log().contains("waiting for the running process")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.signal("QUIT");
    let old_pid = old.pid();
    // the old process sends its sockets, keeps accepting for 5 s beside the new one, then drains
    let (exit, old) = tokio::task::spawn_blocking(move || {
        let mut old = old;
        let exit = old.wait_exit(Duration::from_secs(20));
        (exit, old)
    })
    .await
    .unwrap();
    let exit = exit.unwrap_or_else(|| panic!("the old process {old_pid} did not exit; log:\n{}", old.logs()));
    assert!(exit.success(), "the old process exits 0 after draining: {exit}; log:\n{}", old.logs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = load.stop().await;
    let served_after = status(&old, "/observations", &mm).await.0;
    let _ = new.kill();
    let _ = new.wait();
    eprintln!("graceful upgrade: {} requests, {} failed", result.ok, result.failures.len());
    assert!(
        result.failures.is_empty(),
        "failed requests: {:?}\nnew process log:\n{}",
        &result.failures[..result.failures.len().min(5)],
        new_log()
    );
    assert_eq!(served_after, 200, "the new process serves on the same address");
    assert!(new_log().contains("oada-gateway starting"), "{}", new_log());
}
