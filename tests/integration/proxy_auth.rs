//! Bearer tokens and OADA scopes on proxied requests (RFC 6750 behaviour).

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::Duration;

fn config(upstream: &Upstream) -> String {
    format!(
        r#"
token_lifetime: 10m
leeway: 0
upstreams:
  api:
    servers: [{up}]
    health_check: {{type: tcp, interval: 200ms}}
routes:
  - path: /observations
    methods: [GET]
    scopes: [weather.observations:read]
    upstream: api
  - path: /observations
    methods: [POST]
    scopes: [weather.observations:write]
    upstream: api
  - path: /stations
    scope_type: weather.stations
    upstream: api
  - path: /multi
    scopes: [a:read, b:read]
    upstream: api
  - path: /raw
    scopes: [weather.observations:read]
    forward_authorization: true
    upstream: api
  - path: /health
    auth: none
    upstream: api
"#,
        up = upstream.addr
    )
}

async fn setup() -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&upstream)).start().await;
    (upstream, gw)
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn valid_token_reaches_upstream_with_identity_and_without_credentials() {
    let (upstream, gw) = setup().await;
    let token = gw.token("mm-client-1", "weather.observations:read");
    let r = client()
        .get(gw.url("/observations/7?station=ames-1"))
        .bearer_auth(&token)
        .header("X-OADA-Client-Id", "spoofed-client")
        .header("X-OADA-Scope", "all:all")
        .header("x-oada-user-id", "frank")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path_and_query, "/observations/7?station=ames-1");
    assert_eq!(req.header_count("x-oada-client-id"), 1, "exactly one identity header");
    assert_eq!(req.header("x-oada-client-id"), Some("mm-client-1"));
    assert_eq!(req.header_count("x-oada-scope"), 1);
    assert_eq!(req.header("x-oada-scope"), Some("weather.observations:read"));
    assert_eq!(req.header("x-oada-user-id"), None, "a partner's token speaks for no person");
    assert_eq!(req.header("authorization"), None, "the bearer token is not forwarded");
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn identity_headers_are_stripped_on_public_routes_and_authorization_kept_when_configured() {
    let (upstream, gw) = setup().await;
    let r = client()
        .get(gw.url("/health"))
        .header("X-OADA-Client-Id", "spoofed-client")
        .header("X-OADA-Scope", "all:all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = gw.token("c", "weather.observations:read");
    let r = client().get(gw.url("/raw")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-oada-client-id"), None);
    assert_eq!(seen[0].header("x-oada-scope"), None);
    assert_eq!(seen[1].header("authorization"), Some(format!("Bearer {token}").as_str()));
}

#[tokio::test]
async fn missing_token_gets_a_bare_bearer_challenge() {
    let (upstream, gw) = setup().await;
    let r = client().get(gw.url("/observations")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(www_authenticate(&r), format!("Bearer realm=\"{}\"", gw.issuer));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"].as_str().unwrap().contains("Bearer"));
    // another scheme carries no bearer token
    let r = client()
        .get(gw.url("/observations"))
        .basic_auth("user", Some("pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(www_authenticate(&r), format!("Bearer realm=\"{}\"", gw.issuer));
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_invalid_token() {
    let (upstream, gw) = setup().await;
    let scope = "weather.observations:read";
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    let expired = {
        let mut c = gw.claims(scope);
        c.iat -= 7200;
        c.exp = c.iat + 3600;
        gw.sign(&c)
    };
    let wrong_iss = {
        let mut c = gw.claims(scope);
        c.iss = "https://evil.example".into();
        gw.sign(&c)
    };
    let wrong_aud = {
        let mut c = gw.claims(scope);
        c.aud = "https://another-api.example".into();
        gw.sign(&c)
    };
    let claims_json = serde_json::to_value(gw.claims(scope)).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": KID})),
        b64(&claims_json)
    );
    let hs256_with_public_key = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(KID.into());
        header.typ = Some("at+jwt".into());
        // the bytes an attacker can fetch: the published JWK set
        let public = client().get(gw.url("/jwks")).send().await.unwrap().bytes().await.unwrap();
        jsonwebtoken::encode(
            &header,
            &gw.claims(scope),
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap()
    };
    let unknown_kid = {
        let other = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(other.as_bytes()).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("somebody-elses-key".into());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &gw.claims(scope), &key).unwrap()
    };
    let same_kid_other_key = {
        let other = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(other.as_bytes()).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(KID.into());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &gw.claims(scope), &key).unwrap()
    };
    let not_an_access_token = {
        let key = &gw.keys.signer();
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = Some(KID.into());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &gw.claims(scope), &key.encoding).unwrap()
    };

    let cases = [
        ("garbage", "garbage".to_string(), "well-formed"),
        ("expired", expired, "expired"),
        ("wrong iss", wrong_iss, "another issuer"),
        ("wrong aud", wrong_aud, "another audience"),
        ("alg none", alg_none, "well-formed"),
        ("HS256 keyed with the public key", hs256_with_public_key, "algorithm"),
        ("unknown kid", unknown_kid, "not signed by a key"),
        ("same kid, another key", same_kid_other_key, "signature"),
        ("typ JWT", not_an_access_token, "typ"),
    ];
    for (name, token, description) in cases {
        let r = client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
        let challenge = www_authenticate(&r);
        assert!(challenge.starts_with(&format!("Bearer realm=\"{}\"", gw.issuer)), "{name}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{name}: {challenge}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{name}");
        let text = body["error_description"].as_str().unwrap();
        assert!(text.contains(description), "{name}: {text}");
    }
    assert!(upstream.requests().is_empty(), "no refused request reached the upstream");
    assert!(gw.metric("oada_gateway_auth_decisions_total{result=\"invalid_token\"}").await >= 8.0);
    assert_eq!(gw.metric("oada_gateway_auth_decisions_total{result=\"expired_token\"}").await, 1.0);
    // nothing of the tokens ends up in the logs
    let logs = gw.logs();
    assert!(!logs.contains("garbage"), "a token was logged:\n{logs}");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let (upstream, gw) = setup().await;
    let http = client();
    let status = |r: &reqwest::Response| r.status().as_u16();

    // insufficient scope: 403 naming what is needed
    let r = http
        .get(gw.url("/observations"))
        .bearer_auth(gw.token("c", "weather.stations:read"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 403);
    let challenge = www_authenticate(&r);
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"weather.observations:read\""), "{challenge}");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "insufficient_scope");

    // all:read covers every type's read
    let r = http
        .get(gw.url("/observations"))
        .bearer_auth(gw.token("c", "all:read"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);

    // a read-only token cannot write
    let read_only = gw.token("c", "weather.observations:read");
    let r = http
        .post(gw.url("/observations"))
        .bearer_auth(&read_only)
        .json(&serde_json::json!({"rainfall_mm": 2.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 403);
    assert!(www_authenticate(&r).contains("scope=\"weather.observations:write\""));
    let r = http
        .post(gw.url("/observations"))
        .bearer_auth(gw.token("c", "weather.observations:all"))
        .json(&serde_json::json!({"rainfall_mm": 2.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200, "weather.observations:all covers write");

    // scope_type: the method decides read or write
    let stations_read = gw.token("c", "weather.stations:read");
    let r = http.get(gw.url("/stations/ames-1")).bearer_auth(&stations_read).send().await.unwrap();
    assert_eq!(status(&r), 200);
    let r = http.delete(gw.url("/stations/ames-1")).bearer_auth(&stations_read).send().await.unwrap();
    assert_eq!(status(&r), 403);
    assert!(www_authenticate(&r).contains("scope=\"weather.stations:write\""));
    let r = http
        .delete(gw.url("/stations/ames-1"))
        .bearer_auth(gw.token("c", "weather.stations:all"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);

    // every listed scope is required
    let r = http.get(gw.url("/multi")).bearer_auth(gw.token("c", "a:read")).send().await.unwrap();
    assert_eq!(status(&r), 403);
    let r = http.get(gw.url("/multi")).bearer_auth(gw.token("c", "a:read b:read")).send().await.unwrap();
    assert_eq!(status(&r), 200);

    let methods: Vec<String> = upstream.requests().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["GET", "POST", "GET", "DELETE", "GET"], "only allowed requests went upstream");
    assert_eq!(gw.metric("oada_gateway_auth_decisions_total{result=\"insufficient_scope\"}").await, 4.0);
}

#[tokio::test]
async fn second_request_is_a_cache_hit() {
    let (_upstream, gw) = setup().await;
    let token = gw.token("c", "weather.observations:read");
    let hits = gw.metric("oada_gateway_token_cache_hits_total").await;
    let misses = gw.metric("oada_gateway_token_cache_misses_total").await;
    for _ in 0..2 {
        let r = client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(gw.metric("oada_gateway_token_cache_misses_total").await - misses, 1.0);
    assert_eq!(gw.metric("oada_gateway_token_cache_hits_total").await - hits, 1.0);
    assert_eq!(gw.metric("oada_gateway_auth_decisions_total{result=\"allowed\"}").await, 2.0);
}

#[tokio::test]
async fn token_that_expires_while_cached_is_refused() {
    let (upstream, gw) = setup().await;
    let mut claims = gw.claims("weather.observations:read");
    claims.exp = oada_gateway::ids::unix_now() + 2;
    let token = gw.sign(&claims);
    let r = client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // wait past exp (leeway is 0 in this config)
    while oada_gateway::ids::unix_now() <= claims.exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(&r).contains("expired"));
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(gw.metric("oada_gateway_auth_decisions_total{result=\"expired_token\"}").await, 1.0);
}

#[tokio::test]
async fn query_string_tokens_are_refused_by_default() {
    let (upstream, gw) = setup().await;
    let token = gw.token("c", "weather.observations:read");
    let r = client()
        .get(gw.url(&format!("/observations?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    assert!(upstream.requests().is_empty());
    assert!(!gw.logs().contains(&token), "the token must not be logged");
}

#[tokio::test]
async fn query_string_tokens_when_allowed_are_not_forwarded() {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&(config(&upstream) + "bearer:\n  allow_query_token: true\n"))
        .start()
        .await;
    let token = gw.token("c", "weather.observations:read");
    let r = client()
        .get(gw.url(&format!("/observations?station=ames-1&access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests()[0].path_and_query, "/observations?station=ames-1");
    assert!(!gw.logs().contains(&token), "the token must not be logged");
}

#[tokio::test]
async fn routing_errors_are_json() {
    let (upstream, gw) = setup().await;
    let r = client().get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    // /observationsX is not under /observations
    let r = client().get(gw.url("/observationsX")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client().delete(gw.url("/observations/1")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "method_not_allowed");
    // dot segments could reach another route after normalization upstream: refused
    let addr = gw.base.trim_start_matches("http://").to_string();
    for path in ["/health/../observations", "/health/%2e%2e/observations", "/health/..%2fobservations"] {
        let raw = raw_request(&addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("\"invalid_request\""), "{path}: {raw}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let (_upstream, gw) = setup().await;
    let sample = "oada_gateway_requests_total{method=\"GET\",route=\"/observations\",status=\"200\"}";
    let before = gw.metric(sample).await;
    let token = gw.token("c", "weather.observations:read");
    for _ in 0..3 {
        client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
    }
    client().get(gw.url("/observations")).send().await.unwrap();
    let text = gw.metrics().await;
    assert_eq!(metric_value(&text, sample) - before, 3.0);
    assert_eq!(
        metric_value(&text, "oada_gateway_requests_total{method=\"GET\",route=\"/observations\",status=\"401\"}"),
        1.0
    );
    assert!(metric_value(&text, "oada_gateway_request_duration_seconds_count{route=\"/observations\"}") >= 4.0);
    for name in [
        "oada_gateway_requests_total",
        "oada_gateway_request_duration_seconds",
        "oada_gateway_auth_decisions_total",
        "oada_gateway_token_cache_hits_total",
        "oada_gateway_token_cache_misses_total",
        "oada_gateway_upstream_healthy",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn every_signing_algorithm_verifies_end_to_end() {
    let upstream = Upstream::start().await;
    for alg in [jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::EdDSA] {
        let gw = GatewayBuilder::new(&config(&upstream)).alg(alg).start().await;
        let token = gw.token("c", "weather.observations:read");
        let r = client().get(gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{alg:?}");
        let jwks: serde_json::Value = client().get(gw.url("/jwks")).send().await.unwrap().json().await.unwrap();
        assert_eq!(jwks["keys"][0]["alg"], oada_gateway::keys::jwk::algorithm_name(alg));
        // the healthcheck command sees the admin endpoint
        let admin = format!("{}/healthz", gw.admin);
        let ok = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_oada-gateway"))
                .args(["healthcheck", "--url", &admin])
                .status()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(ok.success());
    }
}
