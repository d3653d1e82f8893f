//! Keys fetched from URLs: partners registered by `jwks_uri` (with key rotation), software
//! statements from a trusted `jku` or an OADA trusted list; untrusted URLs are never fetched.

use crate::harness::*;
use jsonwebtoken::{Algorithm, Header};
use oada_gateway::keys::{generate, SigningKey};
use serde_json::{json, Value};

fn key(kid: &str) -> (SigningKey, Value) {
    let pem = generate::private_key_pem(Algorithm::ES256).unwrap();
    let k = SigningKey::from_pem(kid, Algorithm::ES256, pem.as_bytes()).unwrap();
    let jwk = k.public.to_json();
    (k, jwk)
}

fn assertion(k: &SigningKey, client_id: &str, aud: &str) -> String {
    let now = oada_gateway::ids::unix_now();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(k.kid.clone());
    jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "jti": oada_gateway::ids::random_id(12)}),
        &k.encoding,
    )
    .unwrap()
}

fn routes(upstream: &Upstream) -> String {
    format!("upstreams:\n  api:\n    servers: [{}]\nroutes:\n  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: api\n", upstream.addr)
}

#[tokio::test]
async fn partner_registered_by_jwks_uri_with_key_rotation() {
    let keys = StaticJson::start().await;
    let upstream = Upstream::start().await;
    let (k1, jwk1) = key("k1");
    keys.set("/mm/jwks.json", &json!({"keys": [jwk1]}));
    let jwks_uri = keys.url("/mm/jwks.json");
    let doc = json!({"client_name": "moisturemapper", "jwks_uri": jwks_uri});
    let body = format!(
        "clients:\n  - name: moisturemapper\n    registration_file: mm.json\n    scopes: [weather.observations:read]\n{}",
        routes(&upstream)
    );
    let gw = GatewayBuilder::new(&body).file("mm.json", &doc.to_string()).start().await;

    // another jwks_uri is not the stored document
    let r = client().post(gw.url("/register")).json(&json!({"jwks_uri": keys.url("/other.json")})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let reg: Value = client().post(gw.url("/register")).json(&doc).send().await.unwrap().json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    assert_eq!(reg["jwks_uri"], jwks_uri);

    let (status, body) = gw.token_by_assertion(&assertion(&k1, &client_id, &gw.url("/token"))).await;
    assert_eq!(status, 200, "{body}");
    // the partner rotates to k2: an unknown kid triggers one refetch of the key set
    let (k2, jwk2) = key("k2");
    keys.set("/mm/jwks.json", &json!({"keys": [jwk2]}));
    let (status, body) = gw.token_by_assertion(&assertion(&k2, &client_id, &gw.url("/token"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys.hits("/mm/jwks.json"), 2, "fetched once, refetched once for the new kid");
    // an unknown kid again does not refetch within the refresh interval
    let (k3, _) = key("k3");
    let (status, body) = gw.token_by_assertion(&assertion(&k3, &client_id, &gw.url("/token"))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(keys.hits("/mm/jwks.json"), 2);
}

fn statement(signer: &SigningKey, jku: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(signer.kid.clone());
    header.jku = jku.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &signer.encoding).unwrap()
}

#[tokio::test]
async fn software_statements_from_a_trusted_jku_and_a_trusted_list() {
    let keys = StaticJson::start().await;
    let upstream = Upstream::start().await;
    let (signer_a, jwk_a) = key("signer-a");
    let (signer_b, jwk_b) = key("signer-b");
    keys.set("/a/jwks.json", &json!({"keys": [jwk_a]}));
    keys.set("/b/jwks.json", &json!({"keys": [jwk_b]}));
    keys.set("/list.json", &json!({"version": "2", "jkus": [keys.url("/b/jwks.json")]}));
    let (evil, evil_jwk) = key("signer-a");
    keys.set("/evil/jwks.json", &json!({"keys": [evil_jwk]}));
    let body = format!(
        "software_statements:\n  trusted:\n    - jku: {}\n    - trusted_list: {}\n  scopes: [weather.observations:read]\n{}",
        keys.url("/a/jwks.json"),
        keys.url("/list.json"),
        routes(&upstream)
    );
    let gw = GatewayBuilder::new(&body).start().await;
    let (client_key, client_jwk) = key("app-1");
    let claims = json!({"client_name": "App", "software_id": "app", "jwks": {"keys": [client_jwk]}});
    let register = |s: String| {
        let url = gw.url("/register");
        async move {
            let r = client().post(url).json(&json!({"software_statement": s})).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // signed with the key at a trusted jku
    let (status, reg) = register(statement(&signer_a, Some(&keys.url("/a/jwks.json")), &claims)).await;
    assert_eq!(status, 201, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap();
    let (status, body) = gw.token_by_assertion(&assertion(&client_key, client_id, &gw.url("/token"))).await;
    assert_eq!(status, 200, "{body}");

    // signed with a key at a jku the trusted list names
    let (status, reg) = register(statement(&signer_b, Some(&keys.url("/b/jwks.json")), &claims)).await;
    assert_eq!(status, 201, "{reg}");

    // a jku nobody trusts is never fetched, even with a trusted kid
    let (status, reg) = register(statement(&evil, Some(&keys.url("/evil/jwks.json")), &claims)).await;
    assert_eq!(status, 400);
    assert_eq!(reg["error"], "unapproved_software_statement");
    assert_eq!(keys.hits("/evil/jwks.json"), 0, "an untrusted jku must not be fetched");
    // the trusted jku with a forged signature
    let (status, reg) = register(statement(&evil, Some(&keys.url("/a/jwks.json")), &claims)).await;
    assert_eq!(status, 400);
    assert_eq!(reg["error"], "invalid_software_statement");
}
