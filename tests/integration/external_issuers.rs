//! Tokens of another authorization server: panva's oidc-provider (npm), started on a loopback
//! port, issuing JWT access tokens (client credentials with a resource indicator) and opaque
//! tokens. The gateway discovers its keys and introspection endpoint, verifies its JWTs,
//! refetches keys on rotation (at most once per cooldown for unknown `kid`s), keeps the last
//! good keys while the issuer's JWKS is down, and introspects and caches opaque tokens.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;

const API: &str = "https://api.grounddata.example";

fn body(upstream: &Upstream, issuer: &OidcIssuer, audience: &str, extra: &str) -> String {
    format!(
        r#"
issuers:
  - issuer: {iss}
    discovery: true
    audiences: [{audience}]
    algorithms: [ES256, RS256]
    introspection:
      client_id: {client}
      client_secret_env: INTROSPECTION_SECRET
      cache_max: 5m
      inactive_cache: 1s
{extra}
upstreams:
  api:
    servers: [{up}]
    health_check: {{type: none}}
routes:
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
  - path: /stations
    scopes: [weather.stations:read]
    upstream: api
  - path: /own-only
    issuers: [ISSUER_SELF]
    upstream: api
"#,
        iss = issuer.issuer,
        client = issuer.gateway_client_id,
        up = upstream.addr,
    )
}

/// The gateway's own issuer (fixed, so that a route can name it).
const OWN: &str = "https://gateway.grounddata.example";

async fn start(upstream: &Upstream, issuer: &OidcIssuer, audience: &str, extra: &str) -> Gateway {
    let text = body(upstream, issuer, audience, extra).replace("ISSUER_SELF", OWN);
    let pem = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    GatewayBuilder::new(&text)
        .replica_of(&pem, OWN)
        .env("INTROSPECTION_SECRET", &issuer.gateway_client_secret)
        .start()
        .await
}

async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    client().get(gw.url(path)).bearer_auth(token).send().await.unwrap()
}

fn header_of(jwt: &str) -> Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn another_issuer_s_jwt_reaches_the_upstream_with_its_identity() {
    let issuer = OidcIssuer::start("ES256").await;
    let upstream = Upstream::start().await;
    let gw = start(&upstream, &issuer, API, "").await;
    let token = issuer.jwt_token("partner").await;
    assert_eq!(header_of(&token)["kid"], issuer.kid.as_str());

    let r = get(&gw, "/observations", &token).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-oada-client-id"), Some("partner"));
    let scope = seen[0].header("x-oada-scope").unwrap();
    assert!(scope.contains("weather.observations:read"), "{scope}");
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].header("x-oada-user-id"), None, "a client's own token names no person");

    // a second request is a cache hit: no new key fetch
    let fetches = issuer.counts().await["jwks"].as_u64().unwrap();
    assert_eq!(get(&gw, "/observations", &token).await.status(), 200);
    assert_eq!(issuer.counts().await["jwks"].as_u64().unwrap(), fetches);

    // the other client may only read stations
    let other = issuer.jwt_token("other").await;
    let r = get(&gw, "/observations", &other).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    assert_eq!(get(&gw, "/stations", &other).await.status(), 200);

    // a route restricted to the gateway's own tokens refuses it
    let r = get(&gw, "/own-only", &token).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("does not accept access tokens of this issuer"));

    // the same claims signed by another key under the issuer's kid: refused
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode([7u8; 64]));
    assert_eq!(get(&gw, "/observations", &forged).await.status(), 401);

    // a token naming an issuer that is not configured
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["iss"] = Value::from("https://elsewhere.example");
    let elsewhere = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    let r = get(&gw, "/observations", &elsewhere).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("another issuer"));

    // the gateway's own tokens keep working beside it
    let own = gw.token("mm-own", "weather.observations:read");
    assert_eq!(get(&gw, "/observations", &own).await.status(), 200);
    assert_eq!(get(&gw, "/own-only", &own).await.status(), 200);

    let metrics = gw.metrics().await;
    assert!(metric_value(&metrics, &format!("oada_gateway_jwks_fetches_total{{issuer=\"{}\",result=\"ok\"}}", issuer.issuer)) >= 1.0);
    assert!(metric_value(&metrics, &format!("oada_gateway_jwks_keys{{issuer=\"{}\"}}", issuer.issuer)) >= 1.0);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let issuer = OidcIssuer::start("RS256").await;
    let upstream = Upstream::start().await;
    let gw = start(&upstream, &issuer, "https://another-api.example", "").await;
    let token = issuer.jwt_token("partner").await;
    let r = get(&gw, "/observations", &token).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("another audience"));
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn key_rotation_at_the_issuer_refuses_no_valid_token_and_unknown_kids_do_not_hammer_it() {
    let issuer = OidcIssuer::start("ES256").await;
    let upstream = Upstream::start().await;
    let gw = start(&upstream, &issuer, API, "    jwks_cache: {unknown_kid_cooldown: 2s, min_refresh: 1m}\n").await;
    let first = issuer.jwt_token("partner").await;
    assert_eq!(get(&gw, "/observations", &first).await.status(), 200);

    // rotate: a new kid appears, the old one disappears; a steady load of new tokens runs
    let new_kid = issuer.rotate().await;
    let rotated = issuer.jwt_token("partner").await;
    assert_eq!(header_of(&rotated)["kid"], new_kid.as_str());
    let load = Load::start_raw(gw.addr(), "/observations", Some(rotated.clone()), 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = load.stop().await;
    assert!(result.ok > 100, "only {} requests", result.ok);
    assert!(result.failures.is_empty(), "{} failed, e.g. {:?}", result.failures.len(), &result.failures[..result.failures.len().min(3)]);

    // a burst of tokens naming random unknown kids, 20 at a time: at most one fetch per
    // cooldown (2 s) while it lasts
    let before = issuer.counts().await["jwks"].as_u64().unwrap();
    let parts: Vec<String> = rotated.split('.').map(str::to_string).collect();
    let header = header_of(&rotated);
    let started = std::time::Instant::now();
    let forged: Vec<String> = (0..200)
        .map(|i| {
            let mut h = header.clone();
            h["kid"] = Value::from(format!("unknown-{i}"));
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(h.to_string()), parts[1], parts[2])
        })
        .collect();
    let mut statuses = Vec::new();
    for chunk in forged.chunks(20) {
        let answers = futures_util::future::join_all(chunk.iter().map(|t| get(&gw, "/observations", t))).await;
        statuses.extend(answers.iter().map(|r| r.status().as_u16()));
    }
    let cooldowns = started.elapsed().as_secs_f64() / 2.0;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let fetches = issuer.counts().await["jwks"].as_u64().unwrap() - before;
    assert!(
        fetches as f64 <= 1.0 + cooldowns.floor(),
        "{fetches} fetches for 200 unknown kids over {cooldowns:.1} cooldowns"
    );
    eprintln!("unknown kids: {fetches} key-set fetches for 200 tokens over {cooldowns:.2} cooldowns");
}

#[tokio::test]
async fn the_last_good_keys_serve_while_the_issuer_s_jwks_is_down_until_max_stale() {
    let issuer = OidcIssuer::start("ES256").await;
    let upstream = Upstream::start().await;
    let gw = start(
        &upstream,
        &issuer,
        API,
        "    jwks_cache: {min_refresh: 1s, max_refresh: 1s, max_stale: 4s, unknown_kid_cooldown: 1s}\n",
    )
    .await;
    let ready = client().get(format!("{}/readyz", gw.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    issuer.set_jwks_down(true).await;
    // fresh tokens (not cached) keep verifying with the keys fetched before the outage
    for _ in 0..2 {
        let token = issuer.jwt_token("partner").await;
        assert_eq!(get(&gw, "/observations", &token).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // past max_stale: not ready, and tokens not seen before cannot be checked
    eventually_within("readyz reports the stale keys", Duration::from_secs(10), || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 503
    })
    .await;
    let token = issuer.jwt_token("partner").await;
    let r = get(&gw, "/observations", &token).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let metrics = gw.metrics().await;
    assert!(metric_value(&metrics, &format!("oada_gateway_jwks_fetches_total{{issuer=\"{}\",result=\"error\"}}", issuer.issuer)) >= 1.0);

    // back up: keys again, ready again
    issuer.set_jwks_down(false).await;
    eventually_within("readyz recovers", Duration::from_secs(10), || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 200
    })
    .await;
    assert_eq!(get(&gw, "/observations", &token).await.status(), 200);
}

#[tokio::test]
async fn opaque_tokens_are_introspected_once_cached_and_fail_closed() {
    let issuer = OidcIssuer::start("ES256").await;
    let upstream = Upstream::start().await;
    let gw = start(&upstream, &issuer, API, "").await;
    let opaque = issuer.opaque_token("partner").await;
    assert_eq!(opaque.matches('.').count(), 0, "an opaque token: {opaque}");

    let before = issuer.counts().await["introspection"].as_u64().unwrap();
    for _ in 0..5 {
        let r = get(&gw, "/observations", &opaque).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert_eq!(issuer.counts().await["introspection"].as_u64().unwrap() - before, 1, "introspected once, then cached");
    assert_eq!(upstream.requests()[0].header("x-oada-client-id"), Some("partner"));

    // a burst of concurrent first requests with a new token makes one introspection call
    let burst = issuer.opaque_token("partner").await;
    let before = issuer.counts().await["introspection"].as_u64().unwrap();
    let requests: Vec<_> = (0..24)
        .map(|_| {
            let (url, token) = (gw.url("/observations"), burst.clone());
            tokio::spawn(async move { client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(issuer.counts().await["introspection"].as_u64().unwrap() - before, 1, "24 concurrent requests, one introspection");

    // scopes are checked per route from the cached claims
    let other = issuer.opaque_token("other").await;
    assert_eq!(get(&gw, "/stations", &other).await.status(), 200);
    assert_eq!(get(&gw, "/observations", &other).await.status(), 403);

    // introspection down: opaque tokens not cached get 503, JWTs are unaffected
    issuer.set_introspection_down(true).await;
    let fresh = issuer.opaque_token("partner").await;
    let r = get(&gw, "/observations", &fresh).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
    let jwt = issuer.jwt_token("partner").await;
    assert_eq!(get(&gw, "/observations", &jwt).await.status(), 200);
    issuer.set_introspection_down(false).await;

    // revoked at the issuer: refused once its cache entry ends (a gateway with a short cache)
    let gw2 = start(&upstream, &issuer, API, "").await;
    let short = gw2.config_text().replace("cache_max: 5m", "cache_max: 1s");
    gw2.write_config(&short);
    assert_eq!(gw2.reload().await.0, 200);
    let token = issuer.opaque_token("partner").await;
    assert_eq!(get(&gw2, "/observations", &token).await.status(), 200);
    issuer.revoke(&token).await;
    eventually_within("the revoked token is refused", Duration::from_secs(10), || async {
        get(&gw2, "/observations", &token).await.status() == 401
    })
    .await;
    let r = get(&gw2, "/observations", &token).await;
    assert!(r.text().await.unwrap().contains("not active"));
    let metrics = gw2.metrics().await;
    assert!(metric_value(&metrics, &format!("oada_gateway_introspections_total{{issuer=\"{}\",result=\"inactive\"}}", issuer.issuer)) >= 1.0);
}

/// An issuer whose key set is not there yet: with `startup: fail` the gateway refuses to start;
/// with `startup: degraded` it starts, says not ready, serves its own tokens, and takes the
/// issuer's tokens as soon as its keys can be fetched.
#[tokio::test]
async fn without_the_issuer_s_keys_startup_fail_refuses_to_start_and_degraded_waits_not_ready() {
    use oada_gateway::keys::{KeyRing, SigningKey};
    use oada_gateway::token::TokenIssuer;
    use std::sync::Arc;

    const EXTERNAL: &str = "https://auth.example.com";
    let keys_at = StaticJson::start().await; // answers 404 until a key set is set
    let upstream = Upstream::start().await;
    let body = |startup: &str| {
        format!(
            "issuers:\n  - issuer: {EXTERNAL}\n    jwks_uri: {}\n    audiences: [{API}]\n    algorithms: [ES256]\n    startup: {startup}\n    jwks_cache: {{min_refresh: 1s, max_refresh: 1m}}\nupstreams:\n  api:\n    servers: [{}]\n    health_check: {{type: none}}\nroutes:\n  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: api\n",
            keys_at.url("/jwks"),
            upstream.addr
        )
    };

    // fail: the same config file, run directly, exits 1 and says why
    let dir = tempfile::tempdir().unwrap();
    let pem = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    write(dir.path(), "keys/gw.pem", &pem);
    let config = write(
        dir.path(),
        "gateway.yaml",
        &format!(
            "listen: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{}\nissuer: {OWN}\nsigning_keys:\n  - {{kid: gw, alg: ES256, private_key_file: keys/gw.pem}}\n{}",
            free_port(),
            free_port(),
            body("fail")
        ),
    );
    let run = tokio::task::spawn_blocking(move || std::process::Command::new(gateway_bin()).arg("--config").arg(&config).output());
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("startup: fail does not wait forever")
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(EXTERNAL) && stderr.contains("404"), "names the issuer and what went wrong: {stderr}");
    assert!(keys_at.hits("/jwks") >= 1, "it did try");

    // degraded: up, not ready, own tokens served
    let gw = GatewayBuilder::new(&body("degraded")).replica_of(&pem, OWN).start().await;
    let ready = client().get(format!("{}/readyz", gw.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let answer: Value = ready.json().await.unwrap();
    assert_eq!(answer["issuers"][EXTERNAL]["ready"], false, "{answer}");
    let own = gw.token("client-1", "weather.observations:read");
    assert_eq!(get(&gw, "/observations", &own).await.status(), 200);

    // the issuer's keys appear: fetched on the retry schedule, then its tokens are accepted
    let external_pem = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    let key = SigningKey::from_pem("ext-1", jsonwebtoken::Algorithm::ES256, external_pem.as_bytes()).unwrap();
    keys_at.set("/jwks", &serde_json::json!({"keys": [key.public.to_json()]}));
    let external = TokenIssuer::new(Arc::new(KeyRing::new(vec![key])), EXTERNAL, API, Duration::from_secs(600));
    let token = external
        .issue("partner-app", &oada_gateway::scope::ScopeSet::parse("weather.observations:read").unwrap(), oada_gateway::ids::unix_now())
        .unwrap()
        .access_token;
    eventually_within("the issuer's keys arrive and /readyz says ready", Duration::from_secs(15), || async {
        client().get(format!("{}/readyz", gw.admin)).send().await.unwrap().status() == 200
    })
    .await;
    let r = get(&gw, "/observations", &token).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(upstream.requests().last().unwrap().header("x-oada-client-id"), Some("partner-app"));
}
