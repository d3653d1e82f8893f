//! Micro-benchmarks of the gateway's per-request and per-token work (criterion):
//! bearer validation on a cache hit and on a miss (RS256, ES256, EdDSA), the scope check, route
//! matching, a rate-limit and quota check on a proxied request, and a whole `/token` issuance
//! (assertion verification + access-token signing) for each signing-key algorithm.
//!
//!   cargo bench --bench micro

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, Method};
use jsonwebtoken::Algorithm;
use oada_gateway::auth::verifier::{TokenVerifier, VerifierConfig};
use oada_gateway::config::env::Environment;
use oada_gateway::config::Config;
use oada_gateway::ids::unix_now;
use oada_gateway::keys::{generate, KeyRing, SigningKey};
use oada_gateway::metrics::Metrics;
use oada_gateway::oauth::{AuthorizationServer, Endpoint, HostedRequest};
use oada_gateway::partner::PartnerKey;
use oada_gateway::routes::{Route, RouteAuth, RouteMatch, RouteTable, ScopeRequirement};
use oada_gateway::scope::{Scope, ScopeSet};
use oada_gateway::store::memory::MemoryStore;
use oada_gateway::token::TokenIssuer;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const ISS: &str = "http://127.0.0.1:8080";

/// Polls a future that completes without waiting (the in-memory paths measured here never do).
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the measured path waited on I/O"),
    }
}

fn ring(alg: Algorithm) -> Arc<KeyRing> {
    let pem = generate::private_key_pem(alg).unwrap();
    Arc::new(KeyRing::new(vec![SigningKey::from_pem("k1", alg, pem.as_bytes()).unwrap()]))
}

fn verifier(keys: Arc<KeyRing>) -> TokenVerifier {
    TokenVerifier::new(
        keys,
        &VerifierConfig {
            issuer: ISS.into(),
            audience: ISS.into(),
            leeway: Duration::from_secs(30),
            max_entries: 1_000_000,
            negative_ttl: Duration::from_secs(10),
            negative_max_entries: 10_000,
            token_lifetime: Duration::from_secs(3600),
            outage: None,
            partners: Vec::new(),
        },
        Arc::new(MemoryStore::new(1000, 1_000_000)),
    )
}

fn bearer(c: &mut Criterion) {
    let scope = ScopeSet::parse("weather.observations:read weather.stations:read").unwrap();
    let mut group = c.benchmark_group("bearer");
    for (name, alg) in [("RS256", Algorithm::RS256), ("ES256", Algorithm::ES256), ("EdDSA", Algorithm::EdDSA)] {
        let keys = ring(alg);
        let v = verifier(keys.clone());
        let issuer = TokenIssuer::new(keys, ISS, ISS, Duration::from_secs(3600));
        let token = issuer.issue("client-1", &scope, unix_now()).unwrap().access_token;
        let now = unix_now();
        group.bench_function(format!("cold_validation/{name}"), |b| {
            b.iter(|| black_box(v.check_signature_and_claims(black_box(&token), now).unwrap()))
        });
        if alg == Algorithm::ES256 {
            ready(v.verify(&token, now)).unwrap();
            group.bench_function("cache_hit", |b| {
                b.iter(|| {
                    let verified = ready(v.verify(black_box(&token), now)).unwrap();
                    assert!(verified.cached);
                    black_box(verified)
                })
            });
        }
    }
    group.finish();
}

fn scopes_and_routes(c: &mut Criterion) {
    let held = ScopeSet::parse("weather.observations:read weather.stations:all").unwrap();
    let fixed = ScopeRequirement::All(vec![Scope::parse("weather.observations:read").unwrap()]);
    let by_method = ScopeRequirement::ByMethod {
        kind: "weather.stations".into(),
    };
    c.bench_function("scope_check/fixed", |b| {
        b.iter(|| black_box(fixed.is_met_by(black_box(&held), &Method::GET)))
    });
    c.bench_function("scope_check/by_method", |b| {
        b.iter(|| black_box(by_method.is_met_by(black_box(&held), &Method::POST)))
    });

    let mut routes = Vec::new();
    for (i, prefix) in [
        "/", "/health", "/observations", "/observations/archive", "/stations", "/stations/metadata",
        "/forecasts", "/alerts", "/fields", "/fields/boundaries", "/bookmarks", "/resources",
    ]
    .iter()
    .enumerate()
    {
        routes.push(Route {
            id: 0,
            name: prefix.to_string(),
            prefix: prefix.to_string(),
            methods: Some(vec![Method::GET, Method::HEAD]),
            auth: RouteAuth::Bearer(ScopeRequirement::All(vec![])),
            upstream: i % 2,
            forward_authorization: false,
            issuers: None,
        });
    }
    let table = RouteTable::new(routes);
    c.bench_function("route_match/12_routes", |b| {
        b.iter(|| match table.find(black_box("/observations/archive/2026/11"), &Method::GET) {
            RouteMatch::Found(r) => black_box(r.id),
            _ => panic!("route expected"),
        })
    });
}

/// A config in a temporary folder: gateway key of `alg`, one partner with a fixed client_id.
/// What a proxied request pays for rate limiting: a partner rule, a route rule per address and a
/// monthly quota (all three admit), counted locally or also for sharing through the store.
fn rate_limits(c: &mut Criterion) {
    use oada_gateway::config::{PartnerMatch, QuotaPeriod, QuotaRule, RateLimitRule};
    use oada_gateway::ratelimit::requests::{address_of, Caller, Now, RequestLimits};
    use oada_gateway::ratelimit::{Quota, Rate};
    let rule = |name: &str, partner, per_address| RateLimitRule {
        name: name.into(),
        partner,
        route: None,
        per_client_address: per_address,
        quota: Quota {
            rate: Rate { count: u64::MAX / 4, period: Duration::from_secs(1) },
            burst: u32::MAX,
        },
    };
    let rules = [rule("each", PartnerMatch::EachPartner, false), rule("address", PartnerMatch::Any, true)];
    let quotas = [QuotaRule {
        name: "monthly".into(),
        partner: PartnerMatch::EachPartner,
        limit: u64::MAX,
        period: QuotaPeriod::Month,
    }];
    let partners: Vec<String> = (0..20).map(|i| format!("partner-{i}")).collect();
    let caller = Caller {
        partner: Some(7),
        address: address_of(Some("10.1.2.3".parse().unwrap())),
    };
    let mut group = c.benchmark_group("rate_limit");
    for (name, shared) in [("local", false), ("shared", true)] {
        let limits = RequestLimits::new(&rules, &quotas, partners.clone(), &["/observations"], shared, None);
        group.bench_function(format!("check/{name}"), |b| {
            b.iter(|| limits.check(black_box(0), black_box(caller), Now::current()).unwrap())
        });
    }
    group.finish();
}

fn token_server(alg: Algorithm) -> (AuthorizationServer, PartnerKey, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.pem"), generate::private_key_pem(alg).unwrap()).unwrap();
    let partner_pem = generate::private_key_pem(Algorithm::ES256).unwrap();
    let public = SigningKey::from_pem("mm-1", Algorithm::ES256, partner_pem.as_bytes()).unwrap().public.to_json();
    let doc = serde_json::json!({"client_name": "moisturemapper", "jwks": {"keys": [public]}});
    std::fs::write(dir.path().join("mm.json"), doc.to_string()).unwrap();
    let alg_name = oada_gateway::keys::jwk::algorithm_name(alg);
    let yaml = format!(
        "listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\nissuer: {ISS}\nsigning_keys:\n  - kid: gw\n    alg: {alg_name}\n    private_key_file: gw.pem\nclients:\n  - name: moisturemapper\n    client_id: mm-fixed\n    registration_file: mm.json\n    scopes: [weather.observations:read]\nupstreams:\n  api:\n    servers: [127.0.0.1:8081]\nroutes: []\n"
    );
    let no_env = |_: &str| -> Option<String> { None };
    let config = Arc::new(Config::from_yaml(&yaml, &dir.path().join("gateway.yaml"), &no_env as &dyn Environment).unwrap());
    let store = Arc::new(MemoryStore::new(1000, 10_000_000));
    let verifier = Arc::new(verifier(config.keys.clone()));
    let server = AuthorizationServer::new(config, verifier, store, Arc::new(Metrics::new()), None);
    let key = PartnerKey::from_pem(partner_pem.as_bytes()).unwrap().with_kid_from(&doc).unwrap();
    (server, key, dir)
}

fn token_issuance(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_endpoint");
    for (name, alg) in [("RS256", Algorithm::RS256), ("ES256", Algorithm::ES256), ("EdDSA", Algorithm::EdDSA)] {
        let (server, key, _dir) = token_server(alg);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let token_url = format!("{ISS}/token");
        group.bench_function(format!("client_credentials/{name}_signing"), |b| {
            b.iter_batched(
                // a fresh assertion (new jti) per request; signing it is the client's cost, not timed
                || {
                    let assertion = key.assertion("mm-fixed", &token_url, unix_now());
                    format!(
                        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
                    )
                },
                |body| {
                    let request = HostedRequest {
                        method: &Method::POST,
                        headers: &headers,
                        query: None,
                        body: body.into(),
                        now: unix_now(),
                        client_ip: None,
                        trace: None,
                    };
                    let reply = ready(server.handle(Endpoint::Token, &request));
                    assert_eq!(reply.status, 200);
                    black_box(reply)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bearer, scopes_and_routes, rate_limits, token_issuance);
criterion_main!(benches);
