//! Who the upstream is told is calling: only the gateway says it. Client-sent `X-OADA-*` fields
//! (every one of them, not a list of four), underscored names that CGI, WSGI and Rack upstreams
//! fold into them, and another issuer's `sub` passing for one of the gateway's own people.
//! Every check reads the raw head the upstream received.

use crate::harness::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oada_gateway::keys::{generate, SigningKey};
use serde_json::json;

const IDP: &str = "https://idp.example";
const PARTNER_IDP: &str = "https://partner-idp.example";
const API: &str = "https://api.grounddata.example";

/// Spoofed identity a hostile client sends with its (valid) token.
const SPOOFED: [(&str, &str); 8] = [
    ("X-OADA-Role", "admin-spoofed"),
    ("X-OADA-Issuer", "https://spoofed.example"),
    ("X-OADA-User-Id", "spoofed-frank"),
    ("X-OADA-Client-Id", "spoofed-client"),
    ("x-oada-anything-else", "spoofed-other"),
    ("X_OADA_User_Id", "spoofed-underscore"),
    ("X_Forwarded_For", "spoofed-10.0.0.1"),
    ("My_Header", "spoofed-underscored-name"),
];

struct Idp {
    kid: &'static str,
    pem: String,
    jwks: serde_json::Value,
}

impl Idp {
    fn new(kid: &'static str) -> Idp {
        let pem = generate::private_key_pem(Algorithm::ES256).unwrap();
        let public = SigningKey::from_pem(kid, Algorithm::ES256, pem.as_bytes()).unwrap().public.to_json();
        Idp { kid, pem, jwks: json!({"keys": [public]}) }
    }

    fn token(&self, iss: &str, sub: &str, typ: &str) -> String {
        let now = oada_gateway::ids::unix_now();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.into());
        header.typ = Some(typ.into());
        let claims = json!({"iss": iss, "sub": sub, "client_id": "fieldscout", "aud": API,
            "scope": "weather.observations:read", "iat": now, "exp": now + 300});
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap()).unwrap()
    }
}

async fn setup(idp: &Idp, partner: &Idp, upstream: &Upstream) -> Gateway {
    let body = format!(
        r#"
issuers:
  - issuer: {IDP}
    jwks_file: idp.json
    audiences: [{API}]
    algorithms: [ES256]
    require_typ: at+jwt
  - issuer: {PARTNER_IDP}
    jwks_file: partner.json
    audiences: [{API}]
    algorithms: [ES256]
    shares_subjects: true
upstreams:
  api:
    servers: [{}]
    health_check: {{type: none}}
routes:
  - path: /open
    auth: none
    upstream: api
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
"#,
        upstream.addr
    );
    GatewayBuilder::new(&body)
        .file("idp.json", &idp.jwks.to_string())
        .file("partner.json", &partner.jwks.to_string())
        .start()
        .await
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> u16 {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", gw.addr());
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in SPOOFED {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    status_of(&raw_request(&gw.addr(), &request).await)
}

/// Asserts that nothing the client spoofed reached the upstream and returns the identity fields.
fn identity(seen: &Seen) -> (Option<String>, Option<String>) {
    for (_, value) in SPOOFED {
        assert!(!seen.raw_head.contains(value), "{value} reached the upstream:\n{}", seen.raw_head);
    }
    assert!(
        !seen.headers.keys().any(|n| n.contains('_')),
        "an underscored name reached the upstream:\n{}",
        seen.raw_head
    );
    (seen.header("x-oada-user-id").map(str::to_string), seen.header("x-oada-issuer").map(str::to_string))
}

#[tokio::test]
async fn only_the_gateway_names_the_caller_and_other_issuers_people_are_namespaced() {
    let (idp, partner) = (Idp::new("idp-1"), Idp::new("partner-1"));
    let upstream = Upstream::start().await;
    let gw = setup(&idp, &partner, &upstream).await;

    // without a token: every spoofed field is dropped, no issuer is named
    assert_eq!(get(&gw, "/open", None).await, 200);
    let seen = upstream.requests();
    assert_eq!(identity(&seen[0]), (None, None));

    // the gateway's own token: its issuer is named
    let own = gw.token("mm-1", "weather.observations:read");
    assert_eq!(get(&gw, "/observations", Some(&own)).await, 200);
    let seen = upstream.requests();
    assert_eq!(identity(&seen[1]), (None, Some(gw.issuer.clone())));
    assert_eq!(seen[1].header("x-oada-client-id"), Some("mm-1"));

    // the gateway's own person
    let mut claims = gw.claims("weather.observations:read");
    claims.sub = "frank".into();
    claims.client_id = "fieldscout".into();
    claims.auth_time = Some(claims.iat);
    assert_eq!(get(&gw, "/observations", Some(&gw.sign(&claims))).await, 200);
    assert_eq!(identity(&upstream.requests()[2]), (Some("frank".into()), Some(gw.issuer.clone())));

    // another issuer's frank is not the gateway's frank
    assert_eq!(get(&gw, "/observations", Some(&idp.token(IDP, "frank", "at+jwt"))).await, 200);
    assert_eq!(identity(&upstream.requests()[3]), (Some(format!("{IDP}:frank")), Some(IDP.into())));

    // unless its subjects are configured as the gateway's own
    assert_eq!(get(&gw, "/observations", Some(&partner.token(PARTNER_IDP, "frank", "JWT"))).await, 200);
    assert_eq!(identity(&upstream.requests()[4]), (Some("frank".into()), Some(PARTNER_IDP.into())));

    // require_typ: an ID token (typ JWT) of the first issuer is not an access token
    assert_eq!(get(&gw, "/observations", Some(&idp.token(IDP, "frank", "JWT"))).await, 401);
    assert_eq!(upstream.requests().len(), 5);
}

#[tokio::test]
async fn underscored_names_pass_only_when_allowed_and_never_into_the_gateway_s_namespaces() {
    let upstream = Upstream::start().await;
    let body = format!(
        "upstreams:\n  api:\n    servers: [{}]\n    health_check: {{type: none}}\nroutes:\n  - path: /open\n    auth: none\n    upstream: api\n",
        upstream.addr
    );
    let gw = GatewayBuilder::new(&body).server("underscores_in_headers: true").start().await;
    assert_eq!(get(&gw, "/open", None).await, 200);
    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("my_header"), Some("spoofed-underscored-name"));
    for gone in ["x_oada_user_id", "x_forwarded_for", "x-oada-role", "x-oada-issuer"] {
        assert_eq!(seen.header(gone), None, "{gone}:\n{}", seen.raw_head);
    }
}
