//! Property tests for the parsers that take outside input: whatever arrives, they answer (never
//! panic), and what they accept means what it says.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use oada_gateway::auth::bearer;
use oada_gateway::config::env::Environment;
use oada_gateway::config::Config;
use oada_gateway::keys::PublicJwkSet;
use oada_gateway::oauth::form::{Form, FORM_CONTENT_TYPE};
use oada_gateway::oauth::jws::Jws;
use oada_gateway::proxy::path;
use oada_gateway::scope::ScopeSet;
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

fn authorization(value: &[u8]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
    Some(h)
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with some members the key parser looks at.
fn jwk_like() -> impl Strategy<Value = Value> {
    let member = prop_oneof![
        Just("kty"), Just("crv"), Just("x"), Just("y"), Just("n"), Just("e"), Just("kid"), Just("alg"), Just("use"), Just("d"), Just("k")
    ];
    let text = prop_oneof![
        Just("RSA".to_string()), Just("EC".to_string()), Just("OKP".to_string()), Just("P-256".to_string()),
        Just("Ed25519".to_string()), Just("AQAB".to_string()), "[A-Za-z0-9_-]{0,90}",
    ];
    prop::collection::btree_map(member, prop_oneof![text.prop_map(Value::String), json_value()], 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bearer_extraction_answers_every_header(value in prop::collection::vec(any::<u8>(), 0..64), query in "[ -~]{0,40}", allow in any::<bool>()) {
        if let Some(h) = authorization(&value) {
            if let Ok(token) = bearer::extract(&h, Some(&query), allow) {
                prop_assert!(!token.is_empty());
                prop_assert!(!token.starts_with(' ') && !token.ends_with(' '));
            }
        }
    }

    #[test]
    fn a_bearer_header_yields_its_token(token in "[!-~]{1,80}", scheme in prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")]) {
        let h = authorization(format!("{scheme} {token}").as_bytes()).unwrap();
        prop_assert_eq!(bearer::extract(&h, None, false).unwrap(), token);
    }

    #[test]
    fn path_checks_answer_everything(p in "[ -~]{0,60}") {
        let _ = path::check(&p);
        let _ = path::routing_path(&p);
    }

    #[test]
    fn plain_paths_pass_the_path_check(segments in prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}", 0..6)) {
        let p = format!("/{}", segments.join("/"));
        prop_assume!(!segments.iter().any(|s| s == "." || s == ".."));
        prop_assert!(path::check(&p).is_ok(), "{}", p);
    }

    #[test]
    fn a_dot_segment_in_any_disguise_is_refused(
        before in prop::collection::vec("[a-z0-9]{1,6}", 0..3),
        after in prop::collection::vec("[a-z0-9]{1,6}", 0..3),
        dots in prop_oneof![
            Just("."), Just(".."), Just("%2e"), Just("%2E%2e"), Just(".%2e"), Just("..;"), Just("..;x=1"),
            Just(".;"), Just("%2e%2e;p"), Just("%252e%252e"), Just("%c0%ae%c0%ae"), Just("%u002e%u002e"),
        ],
    ) {
        let mut segments = before;
        segments.push(dots.to_string());
        segments.extend(after);
        let p = format!("/{}", segments.join("/"));
        prop_assert!(path::check(&p).is_err(), "{}", p);
    }

    #[test]
    fn scope_sets_round_trip_through_their_text(text in "[ -~]{0,60}") {
        if let Ok(set) = ScopeSet::parse(&text) {
            let again = ScopeSet::parse(&set.to_string()).unwrap();
            prop_assert_eq!(&again, &set);
            for scope in set.iter() {
                prop_assert!(scope.covers(scope));
            }
        }
    }

    #[test]
    fn forms_answer_any_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        let _ = Form::parse(&h, &body);
    }

    #[test]
    fn forms_carry_their_parameters(params in prop::collection::btree_map("[a-z_]{1,10}", "[ -~]{1,20}", 0..12)) {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        let form = Form::parse(&h, body.as_bytes()).unwrap();
        for (name, value) in &params {
            prop_assert_eq!(form.get(name), Some(value.as_str()));
        }
        if let Some((name, _)) = params.iter().next() {
            let repeated = format!("{body}&{name}=again");
            prop_assert!(Form::parse(&h, repeated.as_bytes()).is_err());
        }
    }

    #[test]
    fn jws_parsing_answers_any_text(text in "[ -~]{0,120}", parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)) {
        let _ = Jws::parse(&text);
        let _ = Jws::parse(&parts.join("."));
    }

    #[test]
    fn jws_parsing_reads_back_what_was_encoded(claims in prop::collection::btree_map("[a-z]{1,5}", json_value(), 0..6), kid in "[a-z0-9]{1,8}") {
        let header = serde_json::json!({"alg": "RS256", "kid": kid});
        let payload = Value::Object(claims.into_iter().collect());
        let token = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let jws = Jws::parse(&token).unwrap();
        prop_assert_eq!(Value::Object(jws.claims.clone()), payload);
        prop_assert_eq!(jws.header_str("kid"), Some(kid.as_str()));
    }

    #[test]
    fn strict_json_agrees_with_serde_json_without_duplicates(value in json_value()) {
        let text = value.to_string();
        prop_assert_eq!(oada_gateway::json::from_slice(text.as_bytes()).unwrap(), value);
    }

    #[test]
    fn registration_key_sets_answer_any_json(keys in prop::collection::vec(jwk_like(), 0..4), other in json_value()) {
        let _ = PublicJwkSet::from_json(&serde_json::json!({"keys": keys}));
        let _ = PublicJwkSet::from_json(&other);
    }
}

/// A valid `gateway.yaml` to mutate.
const BASE: &str = "listen: 127.0.0.1:18080
admin_listen: 127.0.0.1:19090
issuer: http://127.0.0.1:18080
signing_keys:
  - {kid: k, alg: ES256, private_key_file: missing.pem}
upstreams:
  api: {servers: [127.0.0.1:8081], health_check: {type: tcp, interval: 1s}}
routes:
  - {path: /observations, scopes: [weather.observations:read], upstream: api}
server: {threads: 2, header_timeout: 10s}
limits: {register: {rate: 10/s, burst: 5}}
";

struct NoEnv;

impl Environment for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gateway_yaml_loading_answers_any_text(text in "[ -~\n]{0,200}") {
        let _ = Config::from_yaml(&text, Path::new("/nonexistent/gateway.yaml"), &NoEnv);
    }

    #[test]
    fn gateway_yaml_loading_answers_any_edit_of_a_valid_file(at in 0usize..BASE.len(), cut in 0usize..40, insert in "[ -~\n]{0,20}") {
        let mut text = BASE.to_string();
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(text.len());
        text.replace_range(at..end, &insert);
        if let Err(errors) = Config::from_yaml(&text, Path::new("/nonexistent/gateway.yaml"), &NoEnv) {
            prop_assert!(errors.iter().count() >= 1);
            for e in errors.iter() {
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
