//! The user-delegated flow over HTTP, as a browser and the client's server drive it: the
//! authorization endpoint, sign-in, consent, the code exchange with every client-authentication
//! method, PKCE, refresh tokens, OADA client discovery, and the hostile cases.

use crate::harness::*;
use crate::oauth::{PartnerFixture, ASSERTION_TYPE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use oada_gateway::oauth::pkce;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

pub const PASSWORD: &str = "corn field in july";
const SECRET: &str = "secret-app-secret-0123456789";
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// A browser: keeps the gateway's session cookie, follows no redirects.
pub struct Browser {
    http: reqwest::Client,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<String> {
        self.headers.get("location").map(|v| v.to_str().unwrap().to_string())
    }

    /// The body with the entities minijinja's escaping writes decoded (for searching).
    pub fn text(&self) -> String {
        self.body.replace("&#x2f;", "/").replace("&quot;", "\"").replace("&#x27;", "'").replace("&amp;", "&")
    }

    /// The value of a form's hidden input `name`.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!(r#"name="{name}" value=""#);
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn page(&mut self, response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            assert_eq!(name, "oada_gw_session");
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
            self.cookie = (!value.is_empty()).then(|| value.to_string());
        }
        Page {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let mut r = self.http.get(url);
        if let Some(c) = &self.cookie {
            r = r.header("Cookie", format!("oada_gw_session={c}"));
        }
        let response = r.send().await.unwrap();
        self.page(response).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let mut r = self.http.post(url).form(form);
        if let Some(c) = &self.cookie {
            r = r.header("Cookie", format!("oada_gw_session={c}"));
        }
        let response = r.send().await.unwrap();
        self.page(response).await
    }
}

/// A PKCE verifier and its challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = format!("{}{}", oada_gateway::ids::random_id(32), "-._~");
    let challenge = pkce::challenge_of(&verifier);
    (verifier, challenge)
}

pub struct Flow {
    /// The trusted software-statement signer (PEM, kid `oada-signer`).
    pub signer_pem: String,
    /// A redirect URI on a free loopback port, for clients that serve their own callback.
    pub live_redirect: String,
    pub live_port: u16,
    pub gw: Gateway,
    pub upstream: Upstream,
    pub partner: PartnerFixture,
    pub provider: StaticJson,
    pub discovered: PartnerFixture,
    pub discovered_id: String,
}

pub async fn flow_with(extra_authorization: &str) -> Flow {
    let upstream = Upstream::start().await;
    let partner = PartnerFixture::new(Algorithm::RS256, "fs-1", "fieldscout");
    let provider = StaticJson::start().await;
    let discovered = PartnerFixture::new(Algorithm::RS256, "qexmza78sa3wcjxc8Fx", "discovered");
    let signer_pem = oada_gateway::keys::generate::private_key_pem(Algorithm::RS256).unwrap();
    let signer_jwk = oada_gateway::keys::SigningKey::from_pem("oada-signer", Algorithm::RS256, signer_pem.as_bytes())
        .unwrap()
        .public
        .to_json();
    let live_port = free_port();
    let live_redirect = format!("http://127.0.0.1:{live_port}/callback");
    let provider_host = provider.addr.to_string();
    let discovered_id = format!("9jd292@{provider_host}");
    provider.set("/.well-known/oada-configuration", &json!({"client_discovery": provider.url("/discover")}));
    provider.set(
        "/discover",
        &json!({
            "clientId": discovered_id,
            "name": "Field Scout",
            "contact": "clientdiscoveryquestions@fieldscout.example",
            "redirectUrls": [REDIRECT, live_redirect],
            "licenses": [{"licenseid": "oada-dev-1", "name": "OADA Standard Developer Agreement v1"}],
            "keys": discovered.doc["jwks"]["keys"],
            "puc": "https://fieldscout.example/privacy_and_use_components.html"
        }),
    );
    let users = format!(
        "- {{username: frank, password_hash: '{}', name: Frank Farmer, id: frank}}\n- {{username: grace, password_hash: '{}', name: Grace, id: grace}}\n",
        oada_gateway::secrets::hash(PASSWORD),
        oada_gateway::secrets::hash(PASSWORD)
    );
    let body = format!(
        r#"
token_lifetime: 10m
clients:
  - name: fieldscout
    client_id: fieldscout-web
    registration_file: clients/fs.json
    scopes: [weather.stations:read, weather.observations:read]
    redirect_uris: ["{REDIRECT}", "https://fieldscout.example/cb", "{live_redirect}"]
    display_name: Field Scout Web
    policy_uri: https://fieldscout.example/privacy
  - name: mobile
    client_id: mobile-app
    token_endpoint_auth_method: none
    scopes: [weather.stations:read]
    redirect_uris: ["{REDIRECT}", "{live_redirect}"]
  - name: secretapp
    client_id: secret-app
    client_secret_env: SECRET_APP
    scopes: [weather.stations:read]
    redirect_uris: ["{REDIRECT}"]
    grant_types: [authorization_code]
software_statements:
  trusted:
    - jwks_file: trust/signers.json
  scopes: [weather.stations:read]
authorization:
  users_file: users.yaml
  scope_descriptions:
    weather.stations:read: "See your weather stations and where they are"
  client_discovery:
    trusted_providers: ["{provider_host}"]
    scopes: [weather.stations:read]
  login: {{max_failures_per_user: 3, max_failures_per_address: 50}}
{extra_authorization}
upstreams:
  api:
    servers: [{up}]
    health_check: {{type: none}}
routes:
  - path: /stations
    scope_type: weather.stations
    upstream: api
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
"#,
        up = upstream.addr
    );
    let gw = GatewayBuilder::new(&body)
        .file("clients/fs.json", &partner.doc.to_string())
        .file("users.yaml", &users)
        .file("trust/signers.json", &json!({"keys": [signer_jwk]}).to_string())
        .env("SECRET_APP", SECRET)
        .start()
        .await;
    Flow {
        signer_pem,
        live_redirect,
        live_port,
        gw,
        upstream,
        partner,
        provider,
        discovered,
        discovered_id,
    }
}

pub async fn flow() -> Flow {
    flow_with("").await
}

impl Flow {
    pub fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.gw.url("/authorization")).unwrap();
        url.query_pairs_mut().append_pair("client_id", client_id);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.to_string()
    }

    /// Signs in as `username` and approves: returns the redirect back to the client.
    pub async fn approve(&self, browser: &mut Browser, client_id: &str, params: &[(&str, &str)], username: &str) -> String {
        let login = browser.get(&self.authorize_url(client_id, params)).await;
        assert_eq!(login.status, 200, "{}", login.body);
        assert!(login.body.contains(r#"name="username""#) && login.body.contains(r#"name="password""#), "{}", login.body);
        let request = login.hidden("request").unwrap();
        let csrf = login.hidden("csrf").unwrap();
        let after = browser
            .post(&self.gw.url("/login"), &[("username", username), ("password", PASSWORD), ("request", &request), ("csrf", &csrf)])
            .await;
        assert_eq!(after.status, 303, "{}", after.body);
        let consent = browser.get(&format!("{}{}", self.gw.base, after.location().unwrap())).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        let back = browser
            .post(
                &self.gw.url("/consent"),
                &[("decision", "approve"), ("request", &consent.hidden("request").unwrap()), ("csrf", &consent.hidden("csrf").unwrap())],
            )
            .await;
        assert_eq!(back.status, 303, "{}", back.body);
        back.location().unwrap()
    }

    /// A code for `client_id` with PKCE; returns (code, verifier).
    pub async fn code(&self, client_id: &str) -> (String, String) {
        let (verifier, challenge) = pkce_pair();
        let mut browser = Browser::new();
        let back = self
            .approve(&mut browser, client_id, &[("response_type", "code"), ("redirect_uri", REDIRECT), ("state", "s1"), ("code_challenge", &challenge), ("code_challenge_method", "S256")], "frank")
            .await;
        (query_of(&back)["code"].clone(), verifier)
    }

    pub async fn token_owned(&self, form: Vec<(String, String)>) -> (u16, Value) {
        let r = client().post(self.gw.url("/token")).form(&form).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Introspects `token` as fieldscout-web, hinting a refresh token.
    pub async fn introspect_refresh(&self, token: &str) -> Value {
        let assertion = self.assertion(&self.partner, "fieldscout-web", &oada_gateway::ids::random_id(10));
        client()
            .post(self.gw.url("/introspect"))
            .form(&[("token", token), ("token_type_hint", "refresh_token"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = client().post(self.gw.url("/token")).form(form).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub fn assertion(&self, partner: &PartnerFixture, client_id: &str, jti: &str) -> String {
        let now = oada_gateway::ids::unix_now();
        let claims = json!({"iss": client_id, "sub": client_id, "aud": self.gw.url("/token"), "iat": now, "exp": now + 60, "jti": jti});
        let mut header = Header::new(partner.key.alg);
        header.kid = partner.key.kid.clone();
        jsonwebtoken::encode(&header, &claims, &partner.key.encoding).unwrap()
    }

    /// OADA's JWS client_secret, built as in seed 003.
    pub fn jws_secret(&self, partner: &PartnerFixture, client_id: &str, code: &str, jti: &str) -> String {
        let now = oada_gateway::ids::unix_now();
        let claims = json!({"ac": code, "aud": self.gw.url("/token"), "iss": client_id, "jti": jti, "iat": now, "nbf": now});
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = partner.key.kid.clone();
        jsonwebtoken::encode(&header, &claims, &partner.key.encoding).unwrap()
    }

    pub async fn exchange_with_key(&self, code: &str, verifier: &str) -> (u16, Value) {
        let assertion = self.assertion(&self.partner, "fieldscout-web", &oada_gateway::ids::random_id(12));
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .await
    }
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_person_approves_and_the_app_reads_their_stations_then_refreshes() {
    let f = flow().await;
    let (verifier, challenge) = pkce_pair();
    let mut browser = Browser::new();
    let login = browser
        .get(&f.authorize_url("fieldscout-web", &[("response_type", "code"), ("redirect_uri", REDIRECT), ("scope", "weather.stations:read"), ("state", "xyz 1"), ("code_challenge", &challenge), ("code_challenge_method", "S256")]))
        .await;
    assert_eq!(login.status, 200);
    assert!(login.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["cache-control"], "no-store");
    assert!(login.headers["content-security-policy"].to_str().unwrap().contains("form-action 'self' http://127.0.0.1:9"));
    assert!(browser.cookie.is_some(), "an anonymous session cookie");
    let anonymous = browser.cookie.clone();
    let after = browser
        .post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &login.hidden("request").unwrap()), ("csrf", &login.hidden("csrf").unwrap())])
        .await;
    assert_eq!(after.status, 303, "{}", after.body);
    assert_ne!(browser.cookie, anonymous, "signing in replaces the session");
    let consent = browser.get(&format!("{}{}", f.gw.base, after.location().unwrap())).await;
    assert_eq!(consent.status, 200);
    for text in ["Field Scout Web", "Frank Farmer", "See your weather stations and where they are", "https://fieldscout.example/privacy", r#"value="approve""#, r#"value="deny""#] {
        assert!(consent.text().contains(text), "{text} missing from the consent page:\n{}", consent.body);
    }
    let back = browser
        .post(&f.gw.url("/consent"), &[("decision", "approve"), ("request", &consent.hidden("request").unwrap()), ("csrf", &consent.hidden("csrf").unwrap())])
        .await;
    assert_eq!(back.status, 303);
    let location = back.location().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "xyz 1");
    assert_eq!(q["iss"], f.gw.issuer);
    let code = &q["code"];
    assert!(code.len() >= 43, "256-bit codes");

    let (status, tokens) = f.exchange_with_key(code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.len() >= 43);
    let claims = claims_of(&access);
    assert_eq!(claims["sub"], "frank");
    assert_eq!(claims["client_id"], "fieldscout-web");
    assert!(claims["auth_time"].is_u64());
    assert_eq!(tokens["scope"], "weather.stations:read");

    // the upstream sees the person, and a spoofed copy of the header is gone
    let r = client()
        .get(f.gw.url("/stations"))
        .bearer_auth(&access)
        .header("X-OADA-User-Id", "grace")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = f.upstream.requests().pop().unwrap();
    assert_eq!(seen.header("x-oada-user-id"), Some("frank"));
    assert_eq!(seen.header_count("x-oada-user-id"), 1);
    assert_eq!(seen.header("x-oada-client-id"), Some("fieldscout-web"));
    // not allowed beyond the approved scope
    let r = client().get(f.gw.url("/observations")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // refresh: a new pair, rotated
    let refresh_form = |rt: &str| {
        vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".to_string(), rt.to_string()),
            ("client_assertion_type".to_string(), ASSERTION_TYPE.to_string()),
            ("client_assertion".to_string(), f.assertion(&f.partner, "fieldscout-web", &oada_gateway::ids::random_id(12))),
        ]
    };
    let r = client().post(f.gw.url("/token")).form(&refresh_form(&refresh)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    let refresh2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    let access2 = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&access2)["sub"], "frank");
    assert_eq!(client().get(f.gw.url("/stations")).bearer_auth(&access2).send().await.unwrap().status(), 200);

    // the replaced refresh token again: the whole family is revoked, access tokens included
    let r = client().post(f.gw.url("/token")).form(&refresh_form(&refresh)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = client().post(f.gw.url("/token")).form(&refresh_form(&refresh2)).send().await.unwrap();
    assert_eq!(r.status(), 400, "the newest refresh token of a revoked family is dead too");
    for token in [&access, &access2] {
        let r = client().get(f.gw.url("/stations")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 401, "a token of the revoked grant still worked");
    }
    let metrics = f.gw.metrics().await;
    assert_eq!(metric_value(&metrics, r#"oada_gateway_authorizations_total{result="approved"}"#), 1.0);
    assert_eq!(metric_value(&metrics, r#"oada_gateway_tokens_issued_total{client="fieldscout",grant_type="authorization_code"}"#), 1.0);
    assert_eq!(metric_value(&metrics, r#"oada_gateway_tokens_issued_total{client="fieldscout",grant_type="refresh_token"}"#), 1.0);
    let logs = f.gw.logs();
    for secret in [code.as_str(), &access, &refresh, PASSWORD] {
        assert!(!logs.contains(secret), "a code, token or password is in the log");
    }
}

#[tokio::test]
async fn deny_sends_access_denied_with_the_state() {
    let f = flow().await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new();
    let login = browser
        .get(&f.authorize_url("fieldscout-web", &[("response_type", "code"), ("state", "st"), ("redirect_uri", REDIRECT), ("code_challenge", &challenge), ("code_challenge_method", "S256")]))
        .await;
    let after = browser
        .post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &login.hidden("request").unwrap()), ("csrf", &login.hidden("csrf").unwrap())])
        .await;
    let consent = browser.get(&format!("{}{}", f.gw.base, after.location().unwrap())).await;
    let back = browser
        .post(&f.gw.url("/consent"), &[("decision", "deny"), ("request", &consent.hidden("request").unwrap()), ("csrf", &consent.hidden("csrf").unwrap())])
        .await;
    let q = query_of(&back.location().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st");
    assert!(!q.contains_key("code"));
    assert_eq!(f.gw.metric(r#"oada_gateway_authorizations_total{result="denied"}"#).await, 1.0);
}

#[tokio::test]
async fn requests_that_cannot_be_trusted_get_a_page_and_never_a_redirect() {
    let f = flow().await;
    let mut browser = Browser::new();
    let (_, challenge) = pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("response_type", "code")];
    for (what, client_id, redirect) in [
        ("unregistered redirect_uri", "fieldscout-web", "https://evil.example/cb"),
        ("extra path", "fieldscout-web", "http://127.0.0.1:9/cb/more"),
        ("extra query", "fieldscout-web", "http://127.0.0.1:9/cb?x=1"),
        ("unknown client", "nobody", REDIRECT),
        ("untrusted discovery provider", "9jd292@client.evil.example", REDIRECT),
    ] {
        let mut params = pkce.to_vec();
        params.push(("redirect_uri", redirect));
        let page = browser.get(&f.authorize_url(client_id, &params)).await;
        assert_eq!(page.status, 400, "{what}: {}", page.body);
        assert!(page.location().is_none(), "{what}: redirected");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"), "{what}");
        assert!(page.body.contains("error-code"), "{what}");
    }
    let page = browser.get(&f.authorize_url("9jd292@client.evil.example", &[("response_type", "code")])).await;
    assert!(page.body.contains("client.evil.example") && page.body.contains("not a client discovery provider"), "{}", page.body);
    assert_eq!(f.gw.metric(r#"oada_gateway_authorizations_total{result="untrusted_client"}"#).await, 2.0);
}

#[tokio::test]
async fn errors_after_validation_go_back_to_the_client() {
    let f = flow().await;
    let mut browser = Browser::new();
    let (_, challenge) = pkce_pair();
    for (what, params, error) in [
        ("implicit", vec![("response_type", "token"), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")], "unsupported_response_type"),
        ("hybrid", vec![("response_type", "code id_token"), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")], "unsupported_response_type"),
        ("no PKCE", vec![("response_type", "code")], "invalid_request"),
        ("plain PKCE", vec![("response_type", "code"), ("code_challenge", challenge.as_str()), ("code_challenge_method", "plain")], "invalid_request"),
        ("scope beyond the client's", vec![("response_type", "code"), ("scope", "weather.stations:write"), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")], "invalid_scope"),
    ] {
        let mut params = params;
        params.push(("state", "keep-me"));
        params.push(("redirect_uri", REDIRECT));
        let r = browser.get(&f.authorize_url("fieldscout-web", &params)).await;
        assert_eq!(r.status, 303, "{what}: {}", r.body);
        let q = query_of(&r.location().unwrap());
        assert_eq!(q["error"], error, "{what}");
        assert_eq!(q["state"], "keep-me", "{what}");
    }
}

#[tokio::test]
async fn a_code_works_once_and_a_second_use_revokes_the_first_tokens() {
    let f = flow().await;
    let (code, verifier) = f.code("fieldscout-web").await;
    let (status, tokens) = f.exchange_with_key(&code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(client().get(f.gw.url("/stations")).bearer_auth(access).send().await.unwrap().status(), 200);
    let (status, body) = f.exchange_with_key(&code, &verifier).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(client().get(f.gw.url("/stations")).bearer_auth(access).send().await.unwrap().status(), 401, "cached token refused after the replay");
    let rt = tokens["refresh_token"].as_str().unwrap();
    let assertion = f.assertion(&f.partner, "fieldscout-web", "j-refresh");
    let (status, _) = f
        .token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)])
        .await;
    assert_eq!(status, 400, "the refresh token of a replayed code is revoked");
}

#[tokio::test]
async fn code_exchange_refusals() {
    let f = flow_with("  code_lifetime: 2s\n").await;
    // wrong and missing verifier, another client, another redirect_uri: nothing issued, code intact
    let (code, verifier) = f.code("fieldscout-web").await;
    let assertion = |jti: &str| f.assertion(&f.partner, "fieldscout-web", jti);
    let base = |a: &str| -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.clone()),
            ("client_assertion_type".into(), ASSERTION_TYPE.into()),
            ("client_assertion".into(), a.into()),
        ]
    };
    let mut wrong = base(&assertion("a1"));
    wrong.push(("redirect_uri".into(), REDIRECT.into()));
    wrong.push(("code_verifier".into(), pkce_pair().0));
    let (s, b) = f.token_owned(wrong).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "wrong verifier: {b}");
    let mut missing = base(&assertion("a2"));
    missing.push(("redirect_uri".into(), REDIRECT.into()));
    let (s, b) = f.token_owned(missing).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "missing verifier: {b}");
    let mut other_redirect = base(&assertion("a3"));
    other_redirect.push(("redirect_uri".into(), "https://fieldscout.example/cb".into()));
    other_redirect.push(("code_verifier".into(), verifier.clone()));
    let (s, b) = f.token_owned(other_redirect).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "other redirect_uri: {b}");
    // the code of fieldscout-web presented by the public mobile client
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", "mobile-app"), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "another client's code: {b}");
    // after all that, the real exchange still works
    let (s, b) = f.exchange_with_key(&code, &verifier).await;
    assert_eq!(s, 200, "{b}");
    // a code past its lifetime
    let (late, late_verifier) = f.code("fieldscout-web").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, b) = f.exchange_with_key(&late, &late_verifier).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "expired code: {b}");
}

#[tokio::test]
async fn a_public_client_uses_pkce_and_no_secret() {
    let f = flow().await;
    let (code, verifier) = f.code("mobile-app").await;
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", "mobile-app"), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(claims_of(b["access_token"].as_str().unwrap())["client_id"], "mobile-app");
    // a confidential client cannot pass as public
    let (code, verifier) = f.code("fieldscout-web").await;
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", "fieldscout-web"), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (401, "invalid_client"), "{b}");
}

#[tokio::test]
async fn secrets_basic_post_and_client_secret_jwt_exchange_codes() {
    let f = flow().await;
    let base64 = base64::engine::general_purpose::STANDARD.encode(format!("secret-app:{SECRET}"));
    let (code, verifier) = f.code("secret-app").await;
    let r = client()
        .post(f.gw.url("/token"))
        .header("Authorization", format!("Basic {base64}"))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "basic");
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "no refresh_token without the refresh_token grant");
    let (code, verifier) = f.code("secret-app").await;
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &verifier), ("client_id", "secret-app"), ("client_secret", SECRET)])
        .await;
    assert_eq!(s, 200, "post: {b}");
    // client_secret_jwt: HS256 keyed with the secret (seed 002)
    let (code, verifier) = f.code("secret-app").await;
    let now = oada_gateway::ids::unix_now();
    let claims = json!({"iss": "secret-app", "sub": "secret-app", "aud": f.gw.url("/token"), "iat": now, "exp": now + 60, "jti": "hs-1"});
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &verifier), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &hs)])
        .await;
    assert_eq!(s, 200, "client_secret_jwt: {b}");
    // HMAC keyed with another secret, and HMAC for a client that has keys, not a secret
    let forged = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"iss": "fieldscout-web", "sub": "fieldscout-web", "aud": f.gw.url("/token"), "exp": now + 60, "jti": "hs-2"}), &jsonwebtoken::EncodingKey::from_secret(b"guess")).unwrap();
    let (s, b) = f
        .token(&[("grant_type", "client_credentials"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &forged)])
        .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (401, "invalid_client"), "{b}");
}

#[tokio::test]
async fn a_discovered_client_exchanges_its_code_with_a_jws_client_secret() {
    let f = flow().await;
    let id = f.discovered_id.clone();
    let (code, verifier) = f.code(&id).await;
    assert_eq!(f.provider.hits("/discover"), 1);
    assert_eq!(f.provider.hits("/.well-known/oada-configuration"), 1);
    let secret = f.jws_secret(&f.discovered, &id, &code, "43LsMttoYy2DwsBw_wRptA==");
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", &id), ("client_secret", &secret), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(claims_of(b["access_token"].as_str().unwrap())["client_id"], id.as_str());
    // the same jti with the next code: a replayed client_secret
    let (code2, verifier2) = f.code(&id).await;
    let replay = f.jws_secret(&f.discovered, &id, &code2, "43LsMttoYy2DwsBw_wRptA==");
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code2), ("client_id", &id), ("client_secret", &replay), ("redirect_uri", REDIRECT), ("code_verifier", &verifier2)])
        .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_grant"), "replayed jti: {b}");
    // `ac` of another code
    let other = f.jws_secret(&f.discovered, &id, &code, "fresh-jti");
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code2), ("client_id", &id), ("client_secret", &other), ("redirect_uri", REDIRECT), ("code_verifier", &verifier2)])
        .await;
    assert_eq!((s, b["error"].as_str().unwrap()), (401, "invalid_client"), "ac of another code: {b}");
    // signed by another key
    let stranger = PartnerFixture::new(Algorithm::RS256, "qexmza78sa3wcjxc8Fx", "stranger");
    let forged = f.jws_secret(&stranger, &id, &code2, "jti-3");
    let (s, _) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code2), ("client_id", &id), ("client_secret", &forged), ("redirect_uri", REDIRECT), ("code_verifier", &verifier2)])
        .await;
    assert_eq!(s, 401);
    // the discovery answers were cached: no new fetch
    assert_eq!(f.provider.hits("/discover"), 1, "the cached client document was fetched again");
    assert!(f.gw.metric(r#"oada_gateway_client_discovery_fetches_total{result="ok"}"#).await >= 1.0);
}

#[tokio::test]
async fn forms_from_elsewhere_change_nothing() {
    let f = flow().await;
    let (_, challenge) = pkce_pair();
    let params = [("response_type", "code"), ("redirect_uri", REDIRECT), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    let mut browser = Browser::new();
    let login = browser.get(&f.authorize_url("fieldscout-web", &params)).await;
    let request = login.hidden("request").unwrap();
    let csrf = login.hidden("csrf").unwrap();
    // sign-in without the CSRF value, and from another browser
    let r = browser.post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &request)]).await;
    assert_eq!(r.status, 403);
    let mut other = Browser::new();
    let r = other
        .post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &request), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 400, "another browser cannot use this request");
    let after = browser
        .post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &request), ("csrf", &csrf)])
        .await;
    assert_eq!(after.status, 303);
    let consent = browser.get(&format!("{}{}", f.gw.base, after.location().unwrap())).await;
    // consent without the CSRF value, and from another (signed-in) session
    let r = browser.post(&f.gw.url("/consent"), &[("decision", "approve"), ("request", &request)]).await;
    assert_eq!(r.status, 403);
    assert!(r.location().is_none());
    let mut mallory = Browser::new();
    f.approve(&mut mallory, "mobile-app", &params, "grace").await;
    let r = mallory
        .post(&f.gw.url("/consent"), &[("decision", "approve"), ("request", &request), ("csrf", &consent.hidden("csrf").unwrap())])
        .await;
    assert_eq!(r.status, 400, "a consent form posted from another session");
    assert!(r.location().is_none());
    assert!(f.gw.metric(r#"oada_gateway_authorizations_total{result="csrf_failed"}"#).await >= 2.0);
}

#[tokio::test]
async fn password_guessing_is_slowed_down() {
    let f = flow().await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new();
    let login = browser
        .get(&f.authorize_url("fieldscout-web", &[("response_type", "code"), ("redirect_uri", REDIRECT), ("code_challenge", &challenge), ("code_challenge_method", "S256")]))
        .await;
    let (request, csrf) = (login.hidden("request").unwrap(), login.hidden("csrf").unwrap());
    let mut statuses = Vec::new();
    for guess in ["a", "b", "c", "d", "e"] {
        let r = browser.post(&f.gw.url("/login"), &[("username", "frank"), ("password", guess), ("request", &request), ("csrf", &csrf)]).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            assert!(r.body.contains("Too many failed sign-ins"));
        }
    }
    assert_eq!(statuses[..3], [400, 400, 400]);
    assert_eq!(statuses[3], 429, "{statuses:?}");
    // even the right password waits now
    let r = browser.post(&f.gw.url("/login"), &[("username", "frank"), ("password", PASSWORD), ("request", &request), ("csrf", &csrf)]).await;
    assert_eq!(r.status, 429);
    assert!(f.gw.metric(r#"oada_gateway_authorizations_total{result="login_failed"}"#).await >= 3.0);
    assert!(f.gw.metric(r#"oada_gateway_authorizations_total{result="login_throttled"}"#).await >= 2.0);
    assert!(!f.gw.logs().contains(PASSWORD));
}

#[tokio::test]
async fn remembered_consent_skips_the_page() {
    let f = flow_with("  remember_consent: true\n").await;
    let mut browser = Browser::new();
    let (_, challenge) = pkce_pair();
    let params = [("response_type", "code"), ("redirect_uri", REDIRECT), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("state", "again")];
    f.approve(&mut browser, "fieldscout-web", &params, "frank").await;
    let again = browser.get(&f.authorize_url("fieldscout-web", &params)).await;
    assert_eq!(again.status, 303, "{}", again.body);
    let q = query_of(&again.location().unwrap());
    assert!(q.contains_key("code") && q["state"] == "again");
    assert_eq!(f.gw.metric(r#"oada_gateway_authorizations_total{result="remembered"}"#).await, 1.0);
}

#[tokio::test]
async fn refresh_tokens_are_introspected_and_revoked_with_their_grant() {
    let f = flow().await;
    let (code, verifier) = f.code("fieldscout-web").await;
    let (_, tokens) = f.exchange_with_key(&code, &verifier).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let info = f.introspect_refresh(rt).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "refresh_token");
    assert_eq!(info["sub"], "frank");
    let assertion = f.assertion(&f.partner, "fieldscout-web", "revoke-1");
    let r = client()
        .post(f.gw.url("/revoke"))
        .form(&[("token", rt), ("token_type_hint", "refresh_token"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.introspect_refresh(rt).await["active"], false);
    assert_eq!(client().get(f.gw.url("/stations")).bearer_auth(access).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn discovery_documents_advertise_the_flow() {
    let f = flow().await;
    for path in ["/.well-known/oada-configuration", "/.well-known/oauth-authorization-server"] {
        let doc: Value = client().get(f.gw.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["authorization_endpoint"], f.gw.url("/authorization"), "{path}");
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        let grants = doc["grant_types_supported"].as_array().unwrap();
        for g in ["authorization_code", "refresh_token", "client_credentials"] {
            assert!(grants.contains(&json!(g)), "{path}: {g}");
        }
        assert!(doc["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
    }
}

#[tokio::test]
async fn the_sample_api_answers_with_the_persons_own_stations() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let server = tokio::spawn(oada_gateway::sample_api::serve(listener));
    let gw = GatewayBuilder::new(&format!(
        "upstreams:\n  api:\n    servers: [{api}]\n    health_check: {{type: none}}\nroutes:\n  - path: /stations\n    scope_type: weather.stations\n    upstream: api\n"
    ))
    .start()
    .await;
    let scope = oada_gateway::scope::ScopeSet::parse("weather.stations:read").unwrap();
    let now = oada_gateway::ids::unix_now();
    let token_for = |user: Option<&str>| {
        let person = user.map(|u| oada_gateway::token::Person { user_id: u, auth_time: now, grant_id: "g" });
        gw.issuer_for_tests().issue_for("fieldscout-web", None, person.as_ref(), &scope, now).unwrap().access_token
    };
    let stations = |token: String| {
        let url = gw.url("/stations");
        async move {
            let body: Value = client().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            let mut ids: Vec<String> = body["stations"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(stations(token_for(Some("frank"))).await, vec!["ames-1", "lafayette-2"]);
    assert_eq!(stations(token_for(Some("grace"))).await, vec!["champaign-3"]);
    assert_eq!(stations(token_for(None)).await.len(), 3, "a partner's own token sees every station");
    // another farmer's station is not there for frank
    let r = client().get(gw.url("/stations/champaign-3")).bearer_auth(token_for(Some("frank"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    server.abort();
}

#[tokio::test]
async fn dynamically_registered_clients_use_the_flow() {
    let f = flow().await;
    // a public app registered with a trusted software statement: the statement's redirect_uris win
    let claims = json!({
        "software_id": "fieldscout-mobile",
        "client_name": "FieldScout Mobile",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "iat": oada_gateway::ids::unix_now(),
    });
    let statement = crate::oauth::statement(&f.signer_pem, "oada-signer", &claims);
    let r = client()
        .post(f.gw.url("/register"))
        .json(&json!({"software_statement": statement, "redirect_uris": ["https://evil.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let registered: Value = r.json().await.unwrap();
    assert_eq!(registered["redirect_uris"], json!([REDIRECT]), "the signed redirect_uris win");
    assert_eq!(registered["token_endpoint_auth_method"], "none");
    let id = registered["client_id"].as_str().unwrap().to_string();
    let (code, verifier) = f.code(&id).await;
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", &id), ("redirect_uri", REDIRECT), ("code_verifier", &verifier)])
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["refresh_token"].is_string());
    assert_eq!(b["scope"], "weather.stations:read", "the statement policy decides the scopes");
    // a registration asking for implicit, or without redirect URIs, is refused
    for (bad, error) in [
        (json!({"response_types": ["token"], "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT]}), "invalid_client_metadata"),
        (json!({"grant_types": ["authorization_code"]}), "invalid_redirect_uri"),
        (json!({"grant_types": ["authorization_code"], "redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
    ] {
        let mut claims = json!({"software_id": "x", "jwks": f.partner.doc["jwks"], "iat": oada_gateway::ids::unix_now()});
        for (k, v) in bad.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let statement = crate::oauth::statement(&f.signer_pem, "oada-signer", &claims);
        let r = client().post(f.gw.url("/register")).json(&json!({"software_statement": statement})).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{bad}");
    }
}

#[tokio::test]
async fn private_key_jwt_with_the_code_as_jti_as_oada_clients_send_it() {
    let f = flow().await;
    let (code, verifier) = f.code("fieldscout-web").await;
    let assertion = f.assertion(&f.partner, "fieldscout-web", &code);
    let (s, b) = f
        .token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &verifier), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)])
        .await;
    assert_eq!(s, 200, "{b}");
}
