//! Two gateway replicas sharing a real `redis-server` (and a 3-node Redis Cluster): what one does,
//! the other sees; an assertion is used once across both; a revocation on one is refused by the
//! other within a second; the user-delegated flow crosses replicas; Redis going away is a 503 (and
//! `store.on_outage` on the proxy path), and coming back heals everything without a restart.

use crate::harness::*;
use crate::oauth::{PartnerFixture, ASSERTION_TYPE};
use crate::user_flow::{pkce_pair, query_of, Browser, PASSWORD, REDIRECT};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Two replicas (same signing key, same issuer) sharing `store`.
struct Pair {
    a: Gateway,
    b: Gateway,
    /// Kept running as long as the replicas.
    _upstream: Upstream,
    partner: PartnerFixture,
}

fn body(upstream: &Upstream, store: &str, users: &str) -> String {
    format!(
        r#"
token_lifetime: 10m
clients:
  - name: moisturemapper
    registration_file: clients/mm.json
    scopes: [weather.observations:read, weather.stations:read]
  - name: mobile
    client_id: mobile-app
    token_endpoint_auth_method: none
    scopes: [weather.stations:read]
    redirect_uris: ["{REDIRECT}"]
authorization:
  users_file: users.yaml
limits:
  token: {{rate: unlimited}}
  register: {{rate: unlimited}}
{store}
upstreams:
  api:
    servers: [{up}]
    health_check: {{type: none}}
routes:
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
  - path: /stations
    scope_type: weather.stations
    upstream: api
  - path: /public
    auth: none
    upstream: api
"#,
        up = upstream.addr
    ) + users
}

async fn pair(store_a: &str, store_b: &str) -> Pair {
    pair_with(store_a, store_b, "").await
}

/// A pair with `extra` top-level settings in both configs.
async fn pair_with(store_a: &str, store_b: &str, extra: &str) -> Pair {
    let upstream = Upstream::start().await;
    let partner = PartnerFixture::new(Algorithm::ES256, "mm-1", "moisturemapper");
    let users = format!("- {{username: frank, password_hash: '{}', id: frank}}\n", oada_gateway::secrets::hash(PASSWORD));
    let a = GatewayBuilder::new(&body(&upstream, store_a, extra))
        .file("clients/mm.json", &partner.doc.to_string())
        .file("users.yaml", &users)
        .start()
        .await;
    let b = GatewayBuilder::new(&body(&upstream, store_b, extra))
        .replica_of(&a.key_pem, &a.issuer)
        .file("clients/mm.json", &partner.doc.to_string())
        .file("users.yaml", &users)
        .start()
        .await;
    for gw in [&a, &b] {
        eventually_within("the revocation mirror in sync", Duration::from_secs(10), || async {
            client().get(format!("{}/readyz", gw.admin)).send().await.map(|r| r.status() == 200).unwrap_or(false)
        })
        .await;
    }
    Pair { a, b, _upstream: upstream, partner }
}

fn redis_store(url: &str, extra: &str) -> String {
    format!("store:\n  type: redis\n  url: {url}\n  key_prefix: \"test:\"\n  command_timeout: 300ms\n{extra}")
}

fn assertion(p: &Pair, client_id: &str, jti: &str) -> String {
    let now = oada_gateway::ids::unix_now();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": format!("{}/token", p.a.issuer), "iat": now, "exp": now + 60, "jti": jti});
    let mut header = Header::new(p.partner.key.alg);
    header.kid = p.partner.key.kid.clone();
    jsonwebtoken::encode(&header, &claims, &p.partner.key.encoding).unwrap()
}

async fn register(gw: &Gateway, doc: &Value) -> String {
    let r = client().post(gw.url("/register")).json(doc).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_string()
}

async fn get(gw: &Gateway, path: &str, token: &str) -> u16 {
    client().get(gw.url(path)).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Registration, replay protection and revocation across two replicas on `store_a`/`store_b`.
async fn shared_state_cases(p: &Pair) {
    // register on A, a token on B, used through A and B
    let client_id = register(&p.a, &p.partner.doc).await;
    let (status, t) = p.b.token_by_assertion(&assertion(p, &client_id, "first")).await;
    assert_eq!(status, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&p.a, "/observations", &access).await, 200);
    assert_eq!(get(&p.b, "/observations", &access).await, 200);

    // one assertion sent to A and B concurrently, many times: exactly one token
    for round in 0..10 {
        let a = assertion(p, &client_id, &format!("race-{round}"));
        let sends: Vec<_> = (0..8)
            .map(|i| {
                let gw = if i % 2 == 0 { p.a.url("/token") } else { p.b.url("/token") };
                let a = a.clone();
                tokio::spawn(async move {
                    client()
                        .post(gw)
                        .form(&[("grant_type", "client_credentials"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", a.as_str())])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut ok = 0;
        for s in sends {
            if s.await.unwrap() == 200 {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "round {round}: {ok} tokens for one assertion");
    }

    // revoke on A; B (which has the token cached) refuses it within a second
    let (_, t) = p.b.token_by_assertion(&assertion(p, &client_id, "to-revoke")).await;
    let doomed = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&p.b, "/observations", &doomed).await, 200, "cached on B");
    let revoked_at = Instant::now();
    let r = client()
        .post(p.a.url("/revoke"))
        .form(&[("token", doomed.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion(p, &client_id, "revoker"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut refused_after = None;
    while revoked_at.elapsed() < Duration::from_secs(2) {
        if get(&p.b, "/observations", &doomed).await == 401 {
            refused_after = Some(revoked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delay = refused_after.expect("B still accepts the revoked token after 2 s");
    eprintln!("revocation on A refused by B after {delay:?}");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
    assert_eq!(get(&p.a, "/observations", &doomed).await, 401);
    assert_eq!(get(&p.b, "/observations", &access).await, 200, "other tokens unaffected");
}

/// A partner's rate limit counted across both replicas: alone, each would admit the whole limit.
#[tokio::test]
async fn two_replicas_share_one_rate_limit_within_the_documented_tolerance() {
    const LIMIT: u64 = 40;
    let redis = RedisServer::start().await;
    let store = redis_store(&redis.url(), "  rate_limit_sync: 50ms\n");
    let rule = format!("rate_limits:\n  - name: mm-per-minute\n    partner: moisturemapper\n    rate: {LIMIT}/m\n    burst: {LIMIT}\n");
    let p = pair_with(&store, &store, &rule).await;
    let client_id = register(&p.a, &p.partner.doc).await;
    let (status, t) = p.a.token_by_assertion(&assertion(&p, &client_id, "limited")).await;
    assert_eq!(status, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    // 3 x LIMIT requests alternating between the replicas, 20 ms apart: each replica gets one
    // every 40 ms and syncs every 50 ms
    let (mut admitted, mut refused) = ([0u64; 2], 0u64);
    let mut headers = None;
    for i in 0..(3 * LIMIT) {
        let gw = if i % 2 == 0 { &p.a } else { &p.b };
        let r = client().get(gw.url("/observations")).bearer_auth(&access).send().await.unwrap();
        match r.status().as_u16() {
            200 => admitted[(i % 2) as usize] += 1,
            429 => {
                refused += 1;
                headers.get_or_insert(r.headers().clone());
            }
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = admitted[0] + admitted[1];
    // documented tolerance: the other replica's admissions since the last sync (here at most 2)
    eprintln!("shared limit {LIMIT}/m over two replicas: admitted {admitted:?} = {total}, refused {refused}");
    assert!((LIMIT..=LIMIT + 4).contains(&total), "admitted {total} ({admitted:?}) of a shared {LIMIT}");
    assert!(admitted[0] > 0 && admitted[1] > 0);
    let h = headers.expect("some requests were refused");
    assert_eq!(h["ratelimit-policy"], format!("\"mm-per-minute\";q={LIMIT};w=60"));
    let refused_on = |m: &str| metric_value(m, "oada_gateway_rate_limited_total{partner=\"moisturemapper\",rule=\"mm-per-minute\"}");
    let (on_a, on_b) = (refused_on(&p.a.metrics().await), refused_on(&p.b.metrics().await));
    assert_eq!(on_a + on_b, refused as f64);
    let keys = redis.cli(&["--scan", "--pattern", "test:c:*"]);
    assert!(keys.contains("rl:mm-per-minute:moisturemapper"), "shared counters in Redis: {keys}");
}

#[tokio::test]
async fn two_replicas_share_registrations_assertions_and_revocations() {
    let redis = RedisServer::start().await;
    let store = redis_store(&redis.url(), "");
    let p = pair(&store, &store).await;
    shared_state_cases(&p).await;
    // every key carries the prefix and an expiry
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    assert!(!keys.trim().is_empty());
    for key in keys.lines().filter(|k| !k.is_empty()) {
        assert!(key.starts_with("test:"), "a key without the prefix: {key}");
        let ttl: i64 = redis.cli(&["TTL", key]).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has no expiry (TTL {ttl})");
    }
    let metrics = p.b.metrics().await;
    assert_eq!(metric_value(&metrics, "oada_gateway_store_up"), 1.0);
    assert!(metric_value(&metrics, "oada_gateway_revocation_mirror_entries") >= 1.0);
    assert!(metrics.contains("oada_gateway_store_latency_seconds_bucket{op=\"remember_assertion\""), "latency by op");
}

#[tokio::test]
async fn the_code_flow_crosses_replicas() {
    let redis = RedisServer::start().await;
    let store = redis_store(&redis.url(), "");
    let p = pair(&store, &store).await;
    let (verifier, challenge) = pkce_pair();
    let mut browser = Browser::new();
    let mut url = url::Url::parse(&p.a.url("/authorization")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "mobile-app")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    // the login page from A, the sign-in posted to B, the consent from A, the decision to B
    let login = browser.get(url.as_str()).await;
    assert_eq!(login.status, 200);
    let signed = browser
        .post(&p.b.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &login.hidden("request").unwrap()), ("csrf", &login.hidden("csrf").unwrap())])
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let consent = browser.get(&format!("{}{}", p.a.base, signed.location().unwrap())).await;
    assert_eq!(consent.status, 200);
    let back = browser
        .post(&p.b.url("/consent"), &[("decision", "approve"), ("request", &consent.hidden("request").unwrap()), ("csrf", &consent.hidden("csrf").unwrap())])
        .await;
    let code = query_of(&back.location().unwrap())["code"].clone();
    // the code exchanged on A
    let exchange = |gw: &Gateway, form: Vec<(&'static str, String)>| {
        let url = gw.url("/token");
        async move {
            let r = client().post(url).form(&form).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, tokens) = exchange(
        &p.a,
        vec![("grant_type", "authorization_code".into()), ("code", code.clone()), ("client_id", "mobile-app".into()), ("redirect_uri", REDIRECT.into()), ("code_verifier", verifier.clone())],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    // and again on B: refused, and the first tokens revoked everywhere
    let (s, _) = exchange(
        &p.b,
        vec![("grant_type", "authorization_code".into()), ("code", code.clone()), ("client_id", "mobile-app".into()), ("redirect_uri", REDIRECT.into()), ("code_verifier", verifier)],
    )
    .await;
    assert_eq!(s, 400);
    let first_access = tokens["access_token"].as_str().unwrap();
    eventually_within("the replayed code's token refused on A", Duration::from_secs(1), || async { get(&p.a, "/stations", first_access).await == 401 }).await;

    // a fresh grant: refresh rotated on B, the old refresh token reused on A: the family is revoked
    let (verifier, challenge) = pkce_pair();
    let mut browser = Browser::new();
    url.query_pairs_mut().clear()
        .append_pair("client_id", "mobile-app")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let login = browser.get(url.as_str()).await;
    let signed = browser
        .post(&p.a.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &login.hidden("request").unwrap()), ("csrf", &login.hidden("csrf").unwrap())])
        .await;
    let consent = browser.get(&format!("{}{}", p.b.base, signed.location().unwrap())).await;
    let back = browser
        .post(&p.a.url("/consent"), &[("decision", "approve"), ("request", &consent.hidden("request").unwrap()), ("csrf", &consent.hidden("csrf").unwrap())])
        .await;
    let code = query_of(&back.location().unwrap())["code"].clone();
    let (_, tokens) = exchange(
        &p.b,
        vec![("grant_type", "authorization_code".into()), ("code", code), ("client_id", "mobile-app".into()), ("redirect_uri", REDIRECT.into()), ("code_verifier", verifier)],
    )
    .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (s, renewed) = exchange(&p.b, vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh.clone()), ("client_id", "mobile-app".into())]).await;
    assert_eq!(s, 200, "{renewed}");
    let renewed_access = renewed["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&p.a, "/stations", &renewed_access).await, 200);
    let (s, body) = exchange(&p.a, vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh), ("client_id", "mobile-app".into())]).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let newest = renewed["refresh_token"].as_str().unwrap().to_string();
    let (s, _) = exchange(&p.b, vec![("grant_type", "refresh_token".into()), ("refresh_token", newest), ("client_id", "mobile-app".into())]).await;
    assert_eq!(s, 400, "the family is revoked on every replica");
    for gw in [&p.a, &p.b] {
        eventually_within("the family's access token refused", Duration::from_secs(1), || async { get(gw, "/stations", &renewed_access).await == 401 }).await;
    }
}

#[tokio::test]
async fn redis_away_is_a_503_and_coming_back_heals_without_a_restart() {
    let mut redis = RedisServer::start().await;
    let a_store = redis_store(&redis.url(), "");
    let b_store = redis_store(&redis.url(), "  on_outage: serve_cached\n  max_stale: 3s\n");
    let p = pair(&a_store, &b_store).await;
    let client_id = register(&p.a, &p.partner.doc).await;
    let (_, t) = p.a.token_by_assertion(&assertion(&p, &client_id, "before")).await;
    let access = t["access_token"].as_str().unwrap().to_string();
    let (_, t) = p.a.token_by_assertion(&assertion(&p, &client_id, "never-used")).await;
    let uncached = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&p.a, "/observations", &access).await, 200);
    assert_eq!(get(&p.b, "/observations", &access).await, 200);

    redis.stop();
    let stopped = Instant::now();
    // the endpoints that need the store: 503 with Retry-After and an RFC-style error, in time
    let r = client().post(p.a.url("/register")).json(&p.partner.doc).send().await.unwrap();
    assert_eq!(r.status(), 201, "partner registrations store nothing and keep working");
    let started = Instant::now();
    let (s, body) = p.a.token_by_assertion(&assertion(&p, &client_id, "during")).await;
    assert_eq!((s, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by command_timeout: {:?}", started.elapsed());
    let r = client()
        .post(p.a.url("/revoke"))
        .form(&[("token", access.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion(&p, &client_id, "revoke-during"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let (_, challenge) = pkce_pair();
    let page = Browser::new()
        .get(&format!("{}?client_id=mobile-app&response_type=code&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256", p.a.url("/authorization"), url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()))
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    // the proxy: A fails closed, B serves its cached token for max_stale; auth: none keeps working
    eventually_within("A's mirror noticed", Duration::from_secs(5), || async { get(&p.a, "/observations", &access).await == 503 }).await;
    assert_eq!(client().get(p.a.url("/public")).send().await.unwrap().status(), 200);
    assert_eq!(get(&p.b, "/observations", &access).await, 200, "serve_cached: a cached token keeps working");
    assert_eq!(get(&p.b, "/observations", &uncached).await, 503, "an uncached token cannot be checked");
    for gw in [&p.a, &p.b] {
        let ready = client().get(format!("{}/readyz", gw.admin)).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        assert_eq!(ready.json::<Value>().await.unwrap()["store"]["status"], "unavailable");
        assert_eq!(gw.metric("oada_gateway_store_up").await, 0.0);
    }
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed()) + Duration::from_millis(500)).await;
    assert_eq!(get(&p.b, "/observations", &access).await, 503, "past max_stale B fails closed too");

    redis.restart().await;
    for gw in [&p.a, &p.b] {
        eventually_within("ready again", Duration::from_secs(15), || async {
            client().get(format!("{}/readyz", gw.admin)).send().await.map(|r| r.status() == 200).unwrap_or(false)
        })
        .await;
        assert_eq!(get(gw, "/observations", &access).await, 200);
    }
    let (s, _) = p.b.token_by_assertion(&assertion(&p, &client_id, "after")).await;
    assert_eq!(s, 200, "the registration made before the outage is still there");
    assert!(p.a.metric(r#"oada_gateway_store_errors_total{op="remember_assertion"}"#).await >= 1.0);
    for gw in [&p.a, &p.b] {
        assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
    }
}

#[tokio::test]
async fn revocations_made_while_a_replica_was_cut_off_are_honoured_after_resync() {
    let redis = RedisServer::start().await;
    // B connects as its own Redis user, so that B alone can be cut off
    redis.cli(&["ACL", "SETUSER", "replica-b", "on", ">b-password", "~*", "&*", "+@all"]);
    let store = redis_store(&redis.url(), "");
    let b_store = format!("{store}  username: replica-b\n  password: b-password\n");
    let p = pair(&store, &b_store).await;
    let client_id = register(&p.a, &p.partner.doc).await;
    let (_, t) = p.a.token_by_assertion(&assertion(&p, &client_id, "one")).await;
    let doomed = t["access_token"].as_str().unwrap().to_string();
    let (_, t) = p.a.token_by_assertion(&assertion(&p, &client_id, "two")).await;
    let kept = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&p.b, "/observations", &doomed).await, 200);
    assert_eq!(get(&p.b, "/observations", &kept).await, 200);

    // cut B off (its user disabled, its connections killed), then revoke on A
    redis.cli(&["ACL", "SETUSER", "replica-b", "off"]);
    redis.cli(&["CLIENT", "KILL", "USER", "replica-b"]);
    eventually_within("B notices", Duration::from_secs(10), || async {
        client().get(format!("{}/readyz", p.b.admin)).send().await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    let r = client()
        .post(p.a.url("/revoke"))
        .form(&[("token", doomed.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion(&p, &client_id, "revoker"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&p.a, "/observations", &doomed).await, 401);

    // B back: its mirror loads everything, the revocation it never heard of included
    redis.cli(&["ACL", "SETUSER", "replica-b", "on"]);
    eventually_within("B in sync again", Duration::from_secs(15), || async {
        client().get(format!("{}/readyz", p.b.admin)).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
    assert_eq!(get(&p.b, "/observations", &doomed).await, 401, "the revocation made while B was cut off");
    assert_eq!(get(&p.b, "/observations", &kept).await, 200);
}

#[tokio::test]
async fn a_redis_cluster_holds_the_shared_state() {
    let cluster = RedisCluster::start(3).await;
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let store = format!("store:\n  type: redis_cluster\n  nodes: [{}]\n  key_prefix: \"test:\"\n  command_timeout: 500ms\n", nodes.join(", "));
    let p = pair(&store, &store).await;
    shared_state_cases(&p).await;
    // the keys spread over the nodes
    let spread = cluster.nodes.iter().filter(|n| n.cli(&["DBSIZE"]).trim() != "0").count();
    assert!(spread >= 2, "keys on {spread} of 3 nodes");
}
