//! Operating for paying partners: who a request is for (`X-OADA-Partner`), per-partner usage
//! metrics, rate limits by partner, route and address, and quotas per period.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;

const MM_SECRET: &str = "mm-secret-0123456789abcdef";
const OTHER_SECRET: &str = "other-secret-0123456789abc";

fn body(upstream: &Upstream, limits: &str) -> String {
    format!(
        "clients:\n  - name: moisturemapper\n    client_id: mm-1\n    client_secret_env: MM_SECRET\n    scopes: [weather.observations:read]\n  - name: other\n    client_id: other-1\n    client_secret_env: OTHER_SECRET\n    scopes: [weather.observations:read]\nlimits:\n  token: {{rate: unlimited}}\nupstreams:\n  api:\n    servers: [{}]\n    health_check: {{type: none}}\nroutes:\n  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: api\n  - path: /public\n    auth: none\n    upstream: api\n{limits}",
        upstream.addr
    )
}

async fn start(upstream: &Upstream, limits: &str) -> Gateway {
    GatewayBuilder::new(&body(upstream, limits))
        .env("MM_SECRET", MM_SECRET)
        .env("OTHER_SECRET", OTHER_SECRET)
        .start()
        .await
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(gw.url(path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_upstream_sees_the_partner_and_never_a_client_supplied_one() {
    let upstream = Upstream::start().await;
    let gw = start(&upstream, "").await;
    let mm = gw.client_credentials_token("mm-1", MM_SECRET, None).await;
    let r = client()
        .get(gw.url("/observations"))
        .bearer_auth(&mm)
        .header("X-OADA-Partner", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(gw.url("/public")).header("X-OADA-Partner", "someone-else").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].header_count("x-oada-partner"), 1);
    assert_eq!(seen[0].header("x-oada-partner"), Some("moisturemapper"));
    assert_eq!(seen[0].header("x-oada-client-id"), Some("mm-1"));
    assert_eq!(seen[1].header("x-oada-partner"), None, "stripped where no token speaks for anyone");

    // usage by partner: requests and response bytes
    let other = gw.client_credentials_token("other-1", OTHER_SECRET, None).await;
    for _ in 0..2 {
        assert_eq!(get(&gw, "/observations", Some(&other)).await.status(), 200);
    }
    let metrics = gw.metrics().await;
    assert_eq!(
        metric_value(&metrics, "oada_gateway_partner_requests_total{partner=\"moisturemapper\",route=\"/observations\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "oada_gateway_partner_requests_total{partner=\"other\",route=\"/observations\",status=\"200\"}"),
        2.0
    );
    assert!(metric_value(&metrics, "oada_gateway_partner_response_bytes_total{partner=\"other\"}") > 0.0);
}

#[tokio::test]
async fn a_partner_over_its_rate_gets_429_while_another_is_unaffected() {
    let upstream = Upstream::start().await;
    let limits = "rate_limits:\n  - name: per-partner\n    partner: \"*\"\n    route: /observations\n    rate: 5/m\n    burst: 5\n";
    let gw = start(&upstream, limits).await;
    let mm = gw.client_credentials_token("mm-1", MM_SECRET, None).await;
    let other = gw.client_credentials_token("other-1", OTHER_SECRET, None).await;
    for i in 0..5 {
        assert_eq!(get(&gw, "/observations", Some(&mm)).await.status(), 200, "request {i}");
    }
    let r = get(&gw, "/observations", Some(&mm)).await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["ratelimit-policy"], "\"per-partner\";q=5;w=60");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "one request in 12 s: {retry}");
    assert_eq!(h["ratelimit"].to_str().unwrap(), format!("\"per-partner\";r=0;t={retry}"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(upstream.requests().len(), 5, "the refused request did not reach the upstream");

    assert_eq!(get(&gw, "/observations", Some(&other)).await.status(), 200, "another partner is unaffected");
    assert_eq!(get(&gw, "/public", None).await.status(), 200, "other routes are unaffected");
    let metrics = gw.metrics().await;
    assert_eq!(metric_value(&metrics, "oada_gateway_rate_limited_total{partner=\"moisturemapper\",rule=\"per-partner\"}"), 1.0);
    assert_eq!(
        metric_value(&metrics, "oada_gateway_partner_requests_total{partner=\"moisturemapper\",route=\"/observations\",status=\"429\"}"),
        1.0
    );
}

#[tokio::test]
async fn per_address_limits_apply_without_a_token() {
    let upstream = Upstream::start().await;
    let limits = "rate_limits:\n  - name: per-address\n    route: /public\n    per_client_address: true\n    rate: 3/m\n";
    let gw = start(&upstream, limits).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/public", None).await.status(), 200);
    }
    assert_eq!(get(&gw, "/public", None).await.status(), 429);
    assert_eq!(gw.metric("oada_gateway_rate_limited_total{partner=\"-\",rule=\"per-address\"}").await, 1.0);
}

#[tokio::test]
async fn quotas_reset_at_the_period_boundary() {
    let upstream = Upstream::start().await;
    let limits = "quotas:\n  - name: mm-2s\n    partner: moisturemapper\n    limit: 3\n    per: 2s\n";
    let gw = start(&upstream, limits).await;
    let mm = gw.client_credentials_token("mm-1", MM_SECRET, None).await;
    let other = gw.client_credentials_token("other-1", OTHER_SECRET, None).await;
    // start just after a period boundary, so that the whole exchange fits in one period
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(2000 - now_ms() % 2000 + 50)).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/observations", Some(&mm)).await.status(), 200);
    }
    let r = get(&gw, "/observations", Some(&mm)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["ratelimit-policy"], "\"mm-2s\";q=3;w=2");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "until the period ends: {retry}");
    assert_eq!(get(&gw, "/observations", Some(&other)).await.status(), 200, "the quota is mm's");
    tokio::time::sleep(Duration::from_millis(2000 - now_ms() % 2000 + 50)).await;
    assert_eq!(get(&gw, "/observations", Some(&mm)).await.status(), 200, "a new period");
}

#[tokio::test]
async fn rate_limit_settings_are_checked() {
    let upstream = Upstream::start().await;
    let bad = "rate_limits:\n  - name: a\n    partner: nobody\n    rate: 5/m\n  - name: a\n    route: /nowhere\n    rate: lots\nquotas:\n  - partner: moisturemapper\n    limit: 0\n    per: fortnight\n";
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{}\nissuer: http://127.0.0.1:1\nsigning_keys:\n  - kid: k\n    alg: ES256\n    private_key_file: k.pem\n{}",
        free_port(),
        free_port(),
        body(&upstream, bad)
    );
    write(dir.path(), "k.pem", &oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap());
    let path = write(dir.path(), "gateway.yaml", &config);
    let out = std::process::Command::new(gateway_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("MM_SECRET", MM_SECRET)
        .env("OTHER_SECRET", OTHER_SECRET)
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "rate_limits[0].partner: no partner is named `nobody`",
        "rate_limits[1].name: `a` names another rate limit too",
        "rate_limits[1].route: no route is named `/nowhere`",
        "rate_limits[1].rate: `lots` is not a rate",
        "quotas[0].per: `fortnight` is not a period",
        "quotas[0].limit: must be at least 1",
    ] {
        assert!(errors.contains(expected), "missing `{expected}` in:\n{errors}");
    }
    assert!(errors.contains("6 errors"), "exactly these:\n{errors}");
}
