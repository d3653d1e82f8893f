//! The hosted authorization server: discovery, JWKS, registration, token, introspection,
//! revocation; the happy path and the hostile cases, over HTTP against the real binary.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oada_gateway::keys::{generate, SigningKey};
use oada_gateway::partner::PartnerKey;
use serde_json::{json, Value};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const PARTNER_SECRET: &str = "agpartner-secret-0123456789abcdef";
const AUDITOR_SECRET: &str = "auditor-secret-0123456789abcdef";

/// A partner: private key (PEM), its registration document, and the loaded key.
pub struct PartnerFixture {
    pub pem: String,
    pub doc: Value,
    pub key: PartnerKey,
}

impl PartnerFixture {
    pub fn new(alg: Algorithm, kid: &str, name: &str) -> Self {
        let pem = generate::private_key_pem(alg).unwrap();
        let public = SigningKey::from_pem(kid, alg, pem.as_bytes()).unwrap().public.to_json();
        let doc = json!({
            "client_name": name,
            "contacts": [format!("ops@{name}.example")],
            "software_id": format!("{name}-app"),
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "jwks": {"keys": [public]}
        });
        let key = PartnerKey::from_pem(pem.as_bytes()).unwrap().with_kid_from(&doc).unwrap();
        PartnerFixture { pem, doc, key }
    }
}

/// The trusted software-statement signer ("OADA") and the gateway config for these tests.
pub struct World {
    pub gw: Gateway,
    pub upstream: Upstream,
    pub partner: PartnerFixture,
    pub signer_pem: String,
}

fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

pub async fn world() -> World {
    world_with(Algorithm::RS256).await
}

/// The world with moisturemapper's key of type `alg`.
pub async fn world_with(alg: Algorithm) -> World {
    world_full(alg, "").await
}

/// The world with more configuration (top-level keys) appended.
pub async fn world_configured(extra: &str) -> World {
    world_full(Algorithm::RS256, extra).await
}

async fn world_full(alg: Algorithm, extra: &str) -> World {
    let upstream = Upstream::start().await;
    let partner = PartnerFixture::new(alg, "mm-2026", "moisturemapper");
    let signer_pem = generate::private_key_pem(Algorithm::RS256).unwrap();
    let signer_jwk = SigningKey::from_pem("oada-signer-1", Algorithm::RS256, signer_pem.as_bytes())
        .unwrap()
        .public
        .to_json();
    let body = format!(
        r#"
token_lifetime: 10m
clients:
  - name: moisturemapper
    registration_file: clients/mm.json
    scopes: [weather.observations:read, weather.stations:read]
  - name: agpartner
    client_id: agpartner-fixed-id
    client_secret_env: AGPARTNER_SECRET
    scopes: [weather.stations:read]
  - name: auditor
    client_id: auditor-1
    client_secret_hash: "{hash}"
    scopes: [weather.stations:read]
    introspection: true
software_statements:
  trusted:
    - jwks_file: trust/signers.json
  scopes: [weather.observations:read]
upstreams:
  api:
    servers: [{up}]
routes:
  - path: /observations
    methods: [GET]
    scopes: [weather.observations:read]
    upstream: api
  - path: /stations
    scope_type: weather.stations
    upstream: api
"#,
        hash = argon2_hash(AUDITOR_SECRET),
        up = upstream.addr
    );
    let body = format!("{body}{extra}");
    let gw = GatewayBuilder::new(&body)
        .file("clients/mm.json", &partner.doc.to_string())
        .file("trust/signers.json", &json!({"keys": [signer_jwk]}).to_string())
        .env("AGPARTNER_SECRET", PARTNER_SECRET)
        .start()
        .await;
    World {
        gw,
        upstream,
        partner,
        signer_pem,
    }
}

impl World {
    pub fn token_endpoint(&self) -> String {
        self.gw.url("/token")
    }

    pub async fn register(&self, doc: &Value) -> reqwest::Response {
        client().post(self.gw.url("/register")).json(doc).send().await.unwrap()
    }

    /// Registers the partner's stored document; returns the client_id.
    pub async fn registered_client(&self) -> String {
        let r = self.register(&self.partner.doc).await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_string()
    }

    pub async fn token_form(&self, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = client().post(self.token_endpoint()).form(form).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn client_credentials(&self, assertion: &str, scope: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.token_form(&form).await
    }

    pub fn claims(&self, client_id: &str) -> Value {
        let now = oada_gateway::ids::unix_now();
        json!({
            "iss": client_id, "sub": client_id, "aud": self.token_endpoint(),
            "iat": now, "exp": now + 60, "jti": oada_gateway::ids::random_id(16)
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.partner.key.alg);
        header.kid = self.partner.key.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.partner.key.encoding).unwrap()
    }
}

fn assert_error(status: u16, body: &Value, expected_status: u16, error: &str, case: &str) {
    assert_eq!(status, expected_status, "{case}: {body}");
    assert_eq!(body["error"], error, "{case}: {body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{case}: {body}");
    assert!(body.get("access_token").is_none(), "{case}: no token on error");
}

#[tokio::test]
async fn discovery_documents_and_jwks() {
    let w = world().await;
    let gw = &w.gw;
    let oada: Value = client().get(gw.url("/.well-known/oada-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(oada["token_endpoint"], gw.url("/token"));
    assert_eq!(oada["registration_endpoint"], gw.url("/register"));
    assert_eq!(oada["jwks_uri"], gw.url("/jwks"));
    assert_eq!(oada["oada_base_uri"], gw.issuer);
    assert_eq!(oada["introspection_endpoint"], gw.url("/introspect"));
    assert_eq!(oada["revocation_endpoint"], gw.url("/revoke"));
    assert!(oada["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")));
    let methods = oada["token_endpoint_auth_methods_supported"].as_array().unwrap();
    for m in ["private_key_jwt", "client_secret_basic", "client_secret_post"] {
        assert!(methods.contains(&json!(m)), "{m}");
    }
    let algs = oada["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap();
    assert!(algs.contains(&json!("RS256")) && !algs.contains(&json!("none")));
    // HMAC only for client_secret_jwt, which a client with a secret from the environment may use
    assert!(methods.contains(&json!("client_secret_jwt")) && algs.contains(&json!("HS256")));
    assert!(oada["scopes_supported"].as_array().unwrap().contains(&json!("weather.observations:read")));

    let meta: Value = client().get(gw.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["issuer"], gw.issuer);
    assert_eq!(meta["token_endpoint"], oada["token_endpoint"]);

    let r = client().get(gw.url("/jwks")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age="));
    let jwks: Value = r.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], KID);
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["kty"], "EC");
    for member in ["crv", "x", "y"] {
        assert!(key[member].is_string(), "{member}");
    }
    assert!(key.get("d").is_none());
}

#[tokio::test]
async fn register_token_and_proxied_request() {
    let w = world().await;
    let r = w.register(&w.partner.doc).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let reg: Value = r.json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    // a partner's client_id carries its binding under a MAC, and 64 random bits
    let encoded = client_id.strip_prefix("p1.").expect("a partner client_id");
    assert!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len() >= 50, "{client_id}");
    let issued = reg["client_id_issued_at"].as_u64().unwrap();
    assert!(reg["client_id_expires_at"].as_u64().unwrap() > issued);
    assert_eq!(reg["client_name"], "moisturemapper");
    assert_eq!(reg["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(reg["jwks"], w.partner.doc["jwks"]);
    assert_eq!(reg["scope"], "weather.observations:read weather.stations:read");

    let assertion = w.sign(&w.claims(client_id));
    let (status, headers, token) = w.client_credentials(&assertion, Some("weather.observations:read")).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 600);
    assert_eq!(token["scope"], "weather.observations:read");
    let access_token = token["access_token"].as_str().unwrap();
    // the token is an RFC 9068 JWT with the registered client as subject
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["sub"], client_id);
    assert_eq!(payload["client_id"], client_id);
    assert_eq!(payload["iss"], w.gw.issuer);
    assert_eq!(payload["aud"], w.gw.issuer);
    assert!(payload["jti"].is_string());

    let r = client().get(w.gw.url("/observations")).bearer_auth(access_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.upstream.requests()[0].header("x-oada-client-id"), Some(client_id));
    // scope omitted: everything the partner may have
    let (status, _, token) = w.client_credentials(&w.sign(&w.claims(client_id)), None).await;
    assert_eq!(status, 200);
    assert_eq!(token["scope"], "weather.observations:read weather.stations:read");

    let metrics = w.gw.metrics().await;
    assert_eq!(metric_value(&metrics, "oada_gateway_registrations_total{result=\"created\"}"), 1.0);
    assert_eq!(
        metric_value(&metrics, "oada_gateway_tokens_issued_total{client=\"moisturemapper\",grant_type=\"client_credentials\"}"),
        2.0
    );
}

#[tokio::test]
async fn jwt_bearer_grant() {
    let w = world().await;
    let client_id = w.registered_client().await;
    let assertion = w.sign(&w.claims(&client_id));
    let (status, _, token) = w
        .token_form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion), ("scope", "weather.stations:read")])
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "weather.stations:read");
    let metrics = w.gw.metrics().await;
    assert_eq!(
        metric_value(&metrics, "oada_gateway_tokens_issued_total{client=\"moisturemapper\",grant_type=\"jwt_bearer\"}"),
        1.0
    );
    // the same JWT cannot be presented again
    let (status, _, body) = w
        .token_form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
        .await;
    assert_error(status, &body, 400, "invalid_grant", "replayed grant assertion");
}

#[tokio::test]
async fn hostile_assertions_get_no_token() {
    let w = world().await;
    let client_id = w.registered_client().await;
    let other_key = PartnerFixture::new(Algorithm::RS256, "mm-2026", "moisturemapper");

    // replay
    let assertion = w.sign(&w.claims(&client_id));
    let (status, _, body) = w.client_credentials(&assertion, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = w.client_credentials(&assertion, None).await;
    assert_error(status, &body, 400, "invalid_grant", "replayed assertion");

    let now = oada_gateway::ids::unix_now() as i64;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = w.claims(&client_id);
        f(&mut c);
        w.sign(&c)
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signed_by_other = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("mm-2026".into());
        jsonwebtoken::encode(&header, &w.claims(&client_id), &other_key.key.encoding).unwrap()
    };
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "mm-2026"})), b64(&w.claims(&client_id)));
    let hs256_public = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("mm-2026".into());
        let public = serde_json::to_vec(&w.partner.doc["jwks"]["keys"][0]).unwrap();
        jsonwebtoken::encode(&header, &w.claims(&client_id), &EncodingKey::from_secret(&public)).unwrap()
    };
    let embedded_jwk = {
        // the attacker's own key in the header: never used to verify
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("attacker".into());
        header.jwk = Some(serde_json::from_value(other_key.doc["jwks"]["keys"][0].clone()).unwrap());
        jsonwebtoken::encode(&header, &w.claims(&client_id), &other_key.key.encoding).unwrap()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("signed by another key", signed_by_other, 401, "invalid_client"),
        ("attacker key embedded in the header", embedded_jwk, 401, "invalid_client"),
        ("wrong aud", with(&|c| c["aud"] = json!("https://someone-else.example/token")), 401, "invalid_client"),
        ("expired", with(&|c| c["exp"] = json!(now - 600)), 401, "invalid_client"),
        ("far-future exp", with(&|c| c["exp"] = json!(now + 30 * 24 * 3600)), 401, "invalid_client"),
        ("missing exp", with(&|c| { c.as_object_mut().unwrap().remove("exp"); }), 401, "invalid_client"),
        ("missing jti", with(&|c| { c.as_object_mut().unwrap().remove("jti"); }), 401, "invalid_client"),
        ("iss is not the client", with(&|c| c["iss"] = json!("someone-else")), 401, "invalid_client"),
        ("unknown client", with(&|c| { c["iss"] = json!("no-such-client"); c["sub"] = json!("no-such-client"); }), 401, "invalid_client"),
        ("not yet valid", with(&|c| c["nbf"] = json!(now + 3600)), 401, "invalid_client"),
        ("alg none", alg_none, 401, "invalid_client"),
        ("HS256 keyed with the public key", hs256_public, 401, "invalid_client"),
    ];
    for (case, assertion, expected_status, error) in cases {
        let (status, _, body) = w.client_credentials(&assertion, None).await;
        assert_error(status, &body, expected_status, error, case);
    }
    // no client authentication at all
    let (status, _, body) = w.token_form(&[("grant_type", "client_credentials")]).await;
    assert_error(status, &body, 401, "invalid_client", "no client authentication");
    let metrics = w.gw.metrics().await;
    assert!(metric_value(&metrics, "oada_gateway_token_errors_total{error=\"invalid_client\"}") >= 13.0);
    assert_eq!(metric_value(&metrics, "oada_gateway_token_errors_total{error=\"invalid_grant\"}"), 1.0);
}

#[tokio::test]
async fn registration_with_the_partners_name_but_another_key_is_refused() {
    let w = world().await;
    let impostor = PartnerFixture::new(Algorithm::RS256, "mm-2026", "moisturemapper");
    // same document, another key: no client_id at all
    let r = w.register(&impostor.doc).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata");
    // the partner's key plus an extra key is not the stored document either
    let mut mixed = w.partner.doc.clone();
    mixed["jwks"]["keys"].as_array_mut().unwrap().push(impostor.doc["jwks"]["keys"][0].clone());
    let r = w.register(&mixed).await;
    assert_eq!(r.status(), 400);
    // a registration of the real document cannot be used with the impostor's key
    let client_id = w.registered_client().await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("mm-2026".into());
    let forged = jsonwebtoken::encode(&header, &w.claims(&client_id), &impostor.key.encoding).unwrap();
    let (status, _, body) = w.client_credentials(&forged, None).await;
    assert_error(status, &body, 401, "invalid_client", "impostor key on a real client_id");
    assert_eq!(
        w.gw.metric("oada_gateway_registrations_total{result=\"invalid_client_metadata\"}").await,
        2.0
    );
}

#[tokio::test]
async fn scope_escalation_is_invalid_scope() {
    let w = world().await;
    let client_id = w.registered_client().await;
    for scope in ["weather.observations:write", "all:read", "weather.observations:read admin:all", "not-a-scope"] {
        let (status, _, body) = w.client_credentials(&w.sign(&w.claims(&client_id)), Some(scope)).await;
        assert_error(status, &body, 400, "invalid_scope", scope);
    }
    // a registration asking for less narrows what later tokens may carry
    let mut narrow = w.partner.doc.clone();
    narrow["scope"] = json!("weather.stations:read");
    let r = w.register(&narrow).await;
    let reg: Value = r.json().await.unwrap();
    assert_eq!(reg["scope"], "weather.stations:read");
    let narrow_id = reg["client_id"].as_str().unwrap();
    let (status, _, body) = w
        .client_credentials(&w.sign(&w.claims(narrow_id)), Some("weather.observations:read"))
        .await;
    assert_error(status, &body, 400, "invalid_scope", "beyond the registered scope");
}

#[tokio::test]
async fn malformed_requests() {
    let w = world().await;
    let http = client();
    // wrong content type at /token
    let r = http.post(w.token_endpoint()).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // unsupported grant
    let (status, _, body) = w.token_form(&[("grant_type", "password"), ("username", "u"), ("password", "p")]).await;
    assert_error(status, &body, 400, "unsupported_grant_type", "password grant");
    // missing grant_type
    let (status, _, body) = w.token_form(&[("scope", "a:read")]).await;
    assert_error(status, &body, 400, "invalid_request", "no grant_type");
    // repeated parameter
    let r = http
        .post(w.token_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // oversized bodies
    let big = "a".repeat(70 * 1024);
    let r = http
        .post(w.token_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let mut huge = w.partner.doc.clone();
    huge["client_name"] = json!(big);
    let r = w.register(&huge).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // non-JSON registration
    let r = http.post(w.gw.url("/register")).header("Content-Type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    let r = http.post(w.gw.url("/register")).form(&[("client_name", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // GET on a POST endpoint
    let r = http.get(w.token_endpoint()).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn client_secrets_basic_and_post() {
    let w = world().await;
    let http = client();
    let r = http
        .post(w.token_endpoint())
        .basic_auth("agpartner-fixed-id", Some(PARTNER_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["scope"], "weather.stations:read");
    // wrong secret over Basic: 401 with a Basic challenge
    let r = http
        .post(w.token_endpoint())
        .basic_auth("agpartner-fixed-id", Some("wrong-secret-wrong-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], format!("Basic realm=\"{}\"", w.gw.issuer));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // client_secret_post, with the Argon2-hashed secret
    let (status, _, body) = w
        .token_form(&[("grant_type", "client_credentials"), ("client_id", "auditor-1"), ("client_secret", AUDITOR_SECRET)])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = w
        .token_form(&[("grant_type", "client_credentials"), ("client_id", "auditor-1"), ("client_secret", "not-the-secret-at-all")])
        .await;
    assert_error(status, &body, 401, "invalid_client", "wrong post secret");
    assert!(headers.get("www-authenticate").is_none(), "no Basic challenge when Basic was not used");
    // two methods at once
    let r = http
        .post(w.token_endpoint())
        .basic_auth("agpartner-fixed-id", Some(PARTNER_SECRET))
        .form(&[("grant_type", "client_credentials"), ("client_id", "agpartner-fixed-id"), ("client_secret", PARTNER_SECRET)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn client_secret_jwt_for_the_client_grant() {
    let w = world().await;
    let now = oada_gateway::ids::unix_now();
    let sign = |secret: &[u8], jti: &str| {
        let claims = json!({"iss": "agpartner-fixed-id", "sub": "agpartner-fixed-id", "aud": w.token_endpoint(), "exp": now + 60, "jti": jti});
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let (status, _, token) = w.client_credentials(&sign(PARTNER_SECRET.as_bytes(), "hs-a"), None).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "weather.stations:read");
    let (status, _, body) = w.client_credentials(&sign(b"not-the-secret-0123456789", "hs-b"), None).await;
    assert_error(status, &body, 401, "invalid_client", "HMAC with another secret");
    // an Argon2-hashed secret cannot key an HMAC: the gateway never has it
    let claims = json!({"iss": "auditor-1", "sub": "auditor-1", "aud": w.token_endpoint(), "exp": now + 60, "jti": "hs-c"});
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(AUDITOR_SECRET.as_bytes())).unwrap();
    let (status, _, body) = w.client_credentials(&hs, None).await;
    assert_error(status, &body, 401, "invalid_client", "HMAC for a hashed secret");
}

#[tokio::test]
async fn introspection_and_revocation() {
    let w = world().await;
    let client_id = w.registered_client().await;
    let (_, _, token) = w.client_credentials(&w.sign(&w.claims(&client_id)), None).await;
    let access_token = token["access_token"].as_str().unwrap().to_string();
    let http = client();
    let introspect = |token: String, auth: (&'static str, &'static str)| {
        let http = http.clone();
        let url = w.gw.url("/introspect");
        async move {
            let r = http.post(url).basic_auth(auth.0, Some(auth.1)).form(&[("token", token.as_str())]).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["cache-control"], "no-store");
            r.json::<Value>().await.unwrap()
        }
    };
    // the auditor may introspect every token
    let info = introspect(access_token.clone(), ("auditor-1", AUDITOR_SECRET)).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], client_id.as_str());
    assert_eq!(info["sub"], client_id.as_str());
    assert_eq!(info["scope"], "weather.observations:read weather.stations:read");
    assert_eq!(info["iss"], w.gw.issuer);
    assert_eq!(info["aud"], w.gw.issuer);
    assert_eq!(info["token_type"], "Bearer");
    assert!(info["exp"].as_u64().unwrap() > info["iat"].as_u64().unwrap());
    // another client without that right sees nothing
    let info = introspect(access_token.clone(), ("agpartner-fixed-id", PARTNER_SECRET)).await;
    assert_eq!(info, json!({"active": false}));
    // garbage is inactive, nothing more
    let info = introspect("garbage".into(), ("auditor-1", AUDITOR_SECRET)).await;
    assert_eq!(info, json!({"active": false}));
    // the owner introspects with private_key_jwt
    let assertion = w.sign(&w.claims(&client_id));
    let r = http
        .post(w.gw.url("/introspect"))
        .form(&[("token", access_token.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    // unauthenticated introspection is refused
    let r = http.post(w.gw.url("/introspect")).form(&[("token", access_token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    // the token works (and is now cached by the proxy)
    let r = http.get(w.gw.url("/observations")).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // revoking someone else's token does nothing, but still answers 200
    let r = http
        .post(w.gw.url("/revoke"))
        .basic_auth("agpartner-fixed-id", Some(PARTNER_SECRET))
        .form(&[("token", access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(w.gw.url("/observations")).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(r.status(), 200, "a stranger cannot revoke the token");
    // the owner revokes it: refused from the next request on, cache included
    let assertion = w.sign(&w.claims(&client_id));
    let r = http
        .post(w.gw.url("/revoke"))
        .form(&[("token", access_token.as_str()), ("token_type_hint", "access_token"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(w.gw.url("/observations")).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("revoked"));
    let info = introspect(access_token.clone(), ("auditor-1", AUDITOR_SECRET)).await;
    assert_eq!(info, json!({"active": false}));
    // revoking garbage is still 200
    let r = http
        .post(w.gw.url("/revoke"))
        .basic_auth("agpartner-fixed-id", Some(PARTNER_SECRET))
        .form(&[("token", "garbage")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.gw.metric("oada_gateway_revocations_total").await, 1.0);
    assert_eq!(w.gw.metric("oada_gateway_auth_decisions_total{result=\"revoked_token\"}").await, 1.0);
}

/// Signs a software statement (OADA style: header carries kid and the public jwk).
pub fn statement(pem: &str, kid: &str, claims: &Value) -> String {
    let signer = SigningKey::from_pem(kid, Algorithm::RS256, pem.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    header.jwk = Some(serde_json::from_value(signer.public.to_json()).unwrap());
    jsonwebtoken::encode(&header, claims, &signer.encoding).unwrap()
}

#[tokio::test]
async fn software_statements() {
    let w = world().await;
    let app = PartnerFixture::new(Algorithm::ES256, "fieldapp-1", "fieldapp");
    let claims = json!({
        "client_name": "Field App",
        "software_id": "fieldapp-123",
        "redirect_uris": ["https://fieldapp.example/cb"],
        "jwks": app.doc["jwks"],
    });
    // trusted: signed by the configured signer
    let trusted = statement(&w.signer_pem, "oada-signer-1", &claims);
    let r = w
        .register(&json!({"software_statement": trusted, "jwks": {"keys": [w.partner.doc["jwks"]["keys"][0]]}}))
        .await;
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    assert_eq!(reg["client_name"], "Field App");
    assert_eq!(reg["software_id"], "fieldapp-123");
    assert_eq!(reg["jwks"], app.doc["jwks"], "keys come from the signed statement, not the body");
    assert_eq!(reg["scope"], "weather.observations:read");
    let client_id = reg["client_id"].as_str().unwrap();
    let now = oada_gateway::ids::unix_now();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("fieldapp-1".into());
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": w.token_endpoint(), "exp": now + 60, "jti": "a1"}),
        &app.key.encoding,
    )
    .unwrap();
    let (status, _, token) = w.client_credentials(&assertion, None).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "weather.observations:read");
    let metrics = w.gw.metrics().await;
    assert_eq!(
        metric_value(&metrics, "oada_gateway_tokens_issued_total{client=\"software_statement\",grant_type=\"client_credentials\"}"),
        1.0
    );

    // untrusted: signed only by its own embedded key
    let own = generate::private_key_pem(Algorithm::RS256).unwrap();
    let untrusted = statement(&own, "self-signed", &claims);
    let r = w.register(&json!({"software_statement": untrusted})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unapproved_software_statement");
    // claims to be the trusted signer's kid, signed by another key
    let forged = statement(&own, "oada-signer-1", &claims);
    let r = w.register(&json!({"software_statement": forged})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_software_statement");
    // garbage
    let r = w.register(&json!({"software_statement": "not.a.jws"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_software_statement");
    // a trusted statement without client keys
    let keyless = statement(&w.signer_pem, "oada-signer-1", &json!({"client_name": "x"}));
    let r = w.register(&json!({"software_statement": keyless})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_software_statement");
    let metrics = w.gw.metrics().await;
    assert_eq!(metric_value(&metrics, "oada_gateway_registrations_total{result=\"unapproved_software_statement\"}"), 1.0);
    assert_eq!(metric_value(&metrics, "oada_gateway_registrations_total{result=\"invalid_software_statement\"}"), 3.0);
}

#[tokio::test]
async fn token_command_for_partners() {
    let w = world().await;
    let key = write(w.gw.dir.path(), "partner/key.pem", &w.partner.pem);
    let doc = write(w.gw.dir.path(), "partner/doc.json", &w.partner.doc.to_string());
    let gw_url = w.gw.issuer.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oada-gateway"))
            .args(["token", "--issuer", &gw_url, "--scope", "weather.stations:read", "--key"])
            .arg(&key)
            .arg("--registration")
            .arg(&doc)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = client().get(w.gw.url("/stations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
