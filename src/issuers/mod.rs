//! External authorization servers (`issuers:`) whose access tokens the proxy accepts beside the
//! gateway's own: JWTs verified with the issuer's key set ([`jwks`]), opaque tokens introspected
//! (RFC 7662, [`introspection`]). What a token grants is cached by the verifier like the
//! gateway's own tokens; this module answers cache misses.
//!
//! A JWT is routed to its issuer by `iss` before any key is chosen; the key comes from that
//! issuer's set by `kid`, and the algorithm must be on the issuer's allow-list and fit the key.

pub mod introspection;
pub mod jwks;

use crate::fetch::{read_bounded, BodyError};
use crate::auth::verifier::TokenRejection;
use crate::config::{ExternalIssuerConfig, IssuerStartup, KeySource, ScopeClaim};
use crate::keys::remote::validate_fetch_url;
use crate::keys::PublicJwkSet;
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Validation;
use jwks::{KeySet, LoadedKeys};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why a token of an external issuer could not be checked now (as opposed to refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerUnavailable {
    #[error("the issuer's keys are not available")]
    NoKeys,
    #[error("the issuer's introspection endpoint did not answer")]
    Introspection,
}

/// The endpoints an issuer's discovery document names.
#[derive(Debug, Default)]
struct Endpoints {
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// What a token of an external issuer grants, before it becomes a cached grant.
#[derive(Debug, Clone)]
pub struct ExternalGrant {
    pub client_id: String,
    pub user: Option<String>,
    /// OADA scopes, space-separated (other scopes are left out).
    pub scope: String,
    /// Unix time after which the grant is no longer used.
    pub valid_until: u64,
}

pub struct ExternalIssuer {
    pub config: ExternalIssuerConfig,
    /// Mixed into cache keys of its opaque tokens: the same string at two issuers is two entries.
    pub salt: u128,
    /// Distinguishes this issuer's cache entries across reloads.
    pub fingerprint: u64,
    http: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
    pub keys: KeySet,
    introspection: Option<introspection::Introspector>,
    /// Introspections under way, by the token's cache key: concurrent first requests with the
    /// same token wait for one call instead of each making their own.
    introspecting: moka::future::Cache<u128, Result<ExternalGrant, TokenRejection>>,
    metrics: Arc<Metrics>,
}

/// Bound on the answers held for waiting requests per issuer (each is dropped when its call
/// ends); past it an answer may be evicted early and a request arriving later makes its own call.
const MAX_INTROSPECTIONS_IN_FLIGHT: u64 = 10_000;

/// Claims an external JWT is read for; the registered ones are checked by `Validation`.
#[derive(Deserialize)]
struct ExternalClaims {
    sub: Option<String>,
    client_id: Option<String>,
    /// OpenID's authorized party: Keycloak's and Auth0's client.
    azp: Option<String>,
    exp: u64,
    iat: Option<u64>,
    #[serde(default)]
    scope: Option<Value>,
    #[serde(default)]
    scp: Option<Value>,
}

impl ExternalIssuer {
    fn new(config: ExternalIssuerConfig, metrics: Arc<Metrics>) -> ExternalIssuer {
        // Both stay the same across reloads as long as what a cached answer depends on does:
        // the issuer, its audiences, algorithms and scope claim (not cache or fetch settings).
        let identity = format!(
            "{}\n{:?}\n{:?}\n{:?}",
            config.issuer, config.audiences, config.algorithms, config.scope_claim
        );
        let h = blake3::keyed_hash(process_key(), identity.as_bytes());
        let salt = u128::from_le_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"));
        let fingerprint = u64::from_le_bytes(h.as_bytes()[16..24].try_into().expect("8 bytes"));
        let timeout = config.jwks_cache.timeout;
        let keys = KeySet::new(config.jwks_cache.clone());
        if let Some(KeySource::File(set)) = &config.keys {
            keys.install(LoadedKeys::new(set.keys(), None), None);
        }
        ExternalIssuer {
            introspection: config.introspection.clone().map(introspection::Introspector::new),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("oada-gateway/", env!("CARGO_PKG_VERSION")))
                // fetches run on several runtimes (start-up, background, request workers): a
                // pooled connection would belong to whichever opened it
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
            introspecting: moka::future::Cache::builder()
                .max_capacity(MAX_INTROSPECTIONS_IN_FLIGHT)
                // entries are removed when their call ends; this only bounds a forgotten one
                .time_to_live(timeout * 2)
                .build(),
            salt,
            fingerprint,
            endpoints: ArcSwapOption::empty(),
            keys,
            config,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.issuer
    }

    pub fn introspects(&self) -> bool {
        self.introspection.is_some()
    }

    /// Keys are fetched from the network (not a file). (An introspection endpoint left to
    /// discovery implies `discovery: true`, hence keys from the discovered `jwks_uri`.)
    pub fn fetches_keys(&self) -> bool {
        matches!(self.config.keys, Some(KeySource::Discovery | KeySource::Url(_)))
    }

    /// Ready: keys usable (when the issuer has keys) and the endpoints known.
    pub fn is_ready(&self) -> bool {
        let keys_ok = self.config.keys.is_none() || self.keys.usable().is_some();
        let introspection_ok = self
            .config
            .introspection
            .as_ref()
            .is_none_or(|i| i.endpoint.is_some() || self.endpoints.load().as_ref().is_some_and(|e| e.introspection_endpoint.is_some()));
        keys_ok && introspection_ok
    }

    /// `/readyz`'s view of this issuer.
    pub fn status(&self) -> Value {
        serde_json::json!({
            "ready": self.is_ready(),
            "keys": self.keys.key_count(),
            "keys_age_seconds": self.keys.age().map(|a| a.as_secs()),
            "introspection": self.introspects(),
        })
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<Duration>), String> {
        validate_fetch_url(url)?;
        let mut response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let max_age = jwks::max_age(response.headers().get("cache-control").and_then(|v| v.to_str().ok()));
        let body = read_bounded(&mut response, MAX_DOCUMENT_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge => format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"),
            BodyError::Read(e) => e.to_string(),
        })?;
        let value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        Ok((value, max_age))
    }

    /// RFC 8414 metadata, else OpenID discovery; its `issuer` must be this issuer exactly.
    async fn discover(&self) -> Result<Arc<Endpoints>, String> {
        if let Some(known) = self.endpoints.load_full() {
            return Ok(known);
        }
        let base = self.config.issuer.trim_end_matches('/');
        let mut last_error = String::new();
        for url in [
            format!("{base}/.well-known/oauth-authorization-server"),
            format!("{base}/.well-known/openid-configuration"),
        ] {
            match self.get_json(&url).await {
                Ok((doc, _)) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
                        return Err(format!("{url} names another issuer"));
                    }
                    let field = |name: &str| -> Result<Option<String>, String> {
                        match doc.get(name).and_then(Value::as_str) {
                            Some(u) => validate_fetch_url(u).map(Some),
                            None => Ok(None),
                        }
                    };
                    let endpoints = Arc::new(Endpoints {
                        jwks_uri: field("jwks_uri")?,
                        introspection_endpoint: field("introspection_endpoint")?,
                    });
                    self.endpoints.store(Some(endpoints.clone()));
                    return Ok(endpoints);
                }
                Err(e) => last_error = e,
            }
        }
        Err(format!("discovery failed: {last_error}"))
    }

    /// The key set's URL: configured, or from the discovery document (fetched once).
    async fn jwks_url(&self) -> Result<String, String> {
        match &self.config.keys {
            Some(KeySource::Url(url)) => Ok(url.clone()),
            Some(KeySource::Discovery) => self
                .discover()
                .await?
                .jwks_uri
                .clone()
                .ok_or_else(|| "the discovery document has no jwks_uri".to_string()),
            _ => Err("the issuer's keys are not fetched".to_string()),
        }
    }

    /// Fetches the key set (after the discovery document, once); installs the keys or keeps
    /// the last good ones. Logged and counted. Only for issuers that [`Self::fetches_keys`].
    pub async fn refresh(&self) {
        let result = async {
            let url = self.jwks_url().await?;
            let (doc, max_age) = self.get_json(&url).await?;
            let set = PublicJwkSet::from_json(&doc).map_err(|e| format!("{url}: not a usable JWK set: {e}"))?;
            if set.keys().len() > jwks::MAX_KEYS {
                return Err(format!("{url}: more than {} keys", jwks::MAX_KEYS));
            }
            Ok::<_, String>((set, max_age))
        }
        .await;
        let issuer = self.config.issuer.as_str();
        match result {
            Ok((set, max_age)) => {
                self.keys.install(LoadedKeys::new(set.keys(), Some(std::time::Instant::now())), max_age);
                self.metrics.jwks_fetches.with_label_values(&[issuer, "ok"]).inc();
                tracing::debug!(issuer, keys = set.keys().len(), "fetched the issuer's keys");
            }
            Err(why) => {
                self.keys.retry_later();
                self.metrics.jwks_fetches.with_label_values(&[issuer, "error"]).inc();
                tracing::warn!(issuer, error = %why, "cannot fetch the issuer's keys; the last good ones stay in use up to jwks_cache.max_stale");
            }
        }
    }

    /// Exports the key set's size and age.
    pub fn refresh_gauges(&self) {
        let issuer = self.config.issuer.as_str();
        self.metrics.jwks_keys.with_label_values(&[issuer]).set(self.keys.key_count() as i64);
        if let Some(age) = self.keys.age() {
            self.metrics.jwks_age.with_label_values(&[issuer]).set(age.as_secs_f64());
        }
    }

    /// Verifies a JWT whose `iss` names this issuer: key by `kid` (fetching the set again, at
    /// most once per cooldown, when the `kid` is unknown), allow-listed algorithm fitting the
    /// key, signature, `iss`, `aud`, `exp`/`nbf`/`iat` with `leeway`.
    pub async fn verify_jwt(&self, token: &str, leeway: u64, now: u64) -> Result<Result<ExternalGrant, TokenRejection>, IssuerUnavailable> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(TokenRejection::Malformed));
        };
        let header_json = token
            .split('.')
            .next()
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| crate::json::from_slice(&bytes).ok());
        let Some(header_json) = header_json else {
            return Ok(Err(TokenRejection::Malformed));
        };
        if header_json.get("crit").is_some() {
            return Ok(Err(TokenRejection::CriticalHeader));
        }
        if !self.config.algorithms.contains(&header.alg) {
            return Ok(Err(TokenRejection::WrongAlgorithm));
        }
        if let Some(required) = &self.config.require_typ {
            // RFC 8725 §3.11: a token of another kind (an ID token, a logout token) is refused
            let typ = header.typ.as_deref().unwrap_or("");
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(required) {
                return Ok(Err(TokenRejection::WrongType));
            }
        }
        let kid = header.kid.as_deref();
        let mut keys = self.keys.usable();
        let known = keys.as_ref().is_some_and(|k| k.find(kid).is_some());
        // a request arriving while another's fetch is under way waits for it (fetch_once);
        // only a kid still unknown after a recent fetch is refused without waiting
        if !known && self.fetches_keys() && !self.keys.known_unknown(kid) {
            self.keys.fetch_once(Some(kid), || self.refresh()).await;
            keys = self.keys.usable();
        }
        let Some(keys) = keys else {
            return Err(IssuerUnavailable::NoKeys);
        };
        let Some(key) = keys.find(kid) else {
            return Ok(Err(TokenRejection::UnknownKey));
        };
        if !key.jwk.accepts(header.alg) {
            return Ok(Err(TokenRejection::WrongAlgorithm));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = match jsonwebtoken::decode::<ExternalClaims>(token, &key.decoding, &validation) {
            Ok(data) => data.claims,
            Err(e) => return Ok(Err(TokenRejection::of_jwt_error(e.kind()))),
        };
        if claims.iat.is_some_and(|iat| iat > now + leeway) {
            return Ok(Err(TokenRejection::IssuedInFuture));
        }
        let valid_until = claims.exp.saturating_add(leeway);
        if valid_until <= now {
            return Ok(Err(TokenRejection::Expired));
        }
        let scope = self.scopes(claims.scope.as_ref(), claims.scp.as_ref());
        Ok(grant_of(claims.client_id.or(claims.azp), claims.sub, scope, valid_until))
    }

    /// OADA scopes of a token, from `scope` (string) and/or `scp` (array) as configured; other
    /// scopes (`openid`, `profile`, ...) are left out.
    fn scopes(&self, scope: Option<&Value>, scp: Option<&Value>) -> String {
        fn take<'a>(out: &mut Vec<&'a str>, v: Option<&'a Value>) {
            match v {
                Some(Value::String(s)) => out.extend(s.split(' ')),
                Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        let mut out: Vec<&str> = Vec::new();
        match self.config.scope_claim {
            ScopeClaim::Scope => take(&mut out, scope),
            ScopeClaim::Scp => take(&mut out, scp),
            ScopeClaim::Both => {
                take(&mut out, scope);
                take(&mut out, scp);
            }
        }
        let mut kept: Vec<&str> = Vec::new();
        for s in out {
            if crate::scope::Scope::parse(s).is_ok() && !kept.contains(&s) {
                kept.push(s);
            }
        }
        kept.join(" ")
    }

    /// Introspects an opaque token (RFC 7662): `Ok(Ok(grant))` when active, `Ok(Err(_))` when
    /// inactive or not acceptable here, `Err` when the endpoint cannot answer (fail closed).
    /// Asks the introspection endpoint about `token` (`key`: its cache key at this issuer);
    /// concurrent calls for the same token share one request.
    pub async fn introspect(&self, token: &str, key: u128, leeway: u64, now: u64) -> Result<Result<ExternalGrant, TokenRejection>, IssuerUnavailable> {
        let answer = self
            .introspecting
            .try_get_with(key, self.introspect_once(token, leeway, now))
            .await
            .map_err(|e| (*e).clone());
        // the shared answer is for the requests that waited on it; later ones use the token cache
        self.introspecting.invalidate(&key).await;
        answer
    }

    async fn introspect_once(&self, token: &str, leeway: u64, now: u64) -> Result<Result<ExternalGrant, TokenRejection>, IssuerUnavailable> {
        let Some(introspector) = &self.introspection else {
            return Ok(Err(TokenRejection::Malformed));
        };
        let endpoint = match &introspector.config.endpoint {
            Some(e) => e.clone(),
            None => match self.discover().await {
                Ok(e) => e.introspection_endpoint.clone().ok_or(IssuerUnavailable::Introspection)?,
                Err(why) => {
                    tracing::warn!(issuer = self.name(), error = %why, "cannot discover the introspection endpoint");
                    return Err(IssuerUnavailable::Introspection);
                }
            },
        };
        let issuer = self.config.issuer.as_str();
        let answer = match introspector.call(&self.http, &endpoint, token).await {
            Ok(answer) => answer,
            Err(why) => {
                self.metrics.introspections.with_label_values(&[issuer, "error"]).inc();
                tracing::warn!(issuer, error = %why, "introspection failed; opaque tokens of this issuer get 503 until it answers");
                return Err(IssuerUnavailable::Introspection);
            }
        };
        let result = self.accept_introspection(&answer, introspector.config.cache_max.as_secs(), leeway, now);
        let label = if result.is_ok() { "active" } else { "inactive" };
        self.metrics.introspections.with_label_values(&[issuer, label]).inc();
        Ok(result)
    }

    fn accept_introspection(&self, a: &introspection::Answer, cache_max: u64, leeway: u64, now: u64) -> Result<ExternalGrant, TokenRejection> {
        if !a.active {
            return Err(TokenRejection::Inactive);
        }
        if a.iss.as_deref().is_some_and(|iss| iss != self.config.issuer) {
            return Err(TokenRejection::WrongIssuer);
        }
        if let Some(aud) = &a.aud {
            let auds: Vec<&str> = match aud {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !auds.iter().any(|x| self.config.audiences.iter().any(|y| y == x)) {
                return Err(TokenRejection::WrongAudience);
            }
        }
        if a.token_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("refresh_token")) {
            return Err(TokenRejection::WrongType);
        }
        if a.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenRejection::NotYetValid);
        }
        let until_cache_max = now + cache_max;
        let valid_until = match a.exp {
            Some(exp) if exp.saturating_add(leeway) <= now => return Err(TokenRejection::Expired),
            Some(exp) => exp.saturating_add(leeway).min(until_cache_max),
            None => until_cache_max,
        };
        let scope = self.scopes(a.scope.as_ref(), a.scp.as_ref());
        grant_of(a.client_id.clone(), a.sub.clone(), scope, valid_until)
    }
}

fn grant_of(client_id: Option<String>, sub: Option<String>, scope: String, valid_until: u64) -> Result<ExternalGrant, TokenRejection> {
    let client_id = client_id.or_else(|| sub.clone()).ok_or(TokenRejection::MissingClaim)?;
    // a token for a person names the person in `sub`; a client's own token names the client
    let user = sub.filter(|s| *s != client_id);
    Ok(ExternalGrant {
        client_id,
        user,
        scope,
        valid_until,
    })
}

/// A random key for this process's cache-key salts: secret, so nobody can aim two tokens of
/// two issuers at one cache entry.
fn process_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).expect("the system random number generator failed");
        key
    })
}

/// The external issuers of one config.
#[derive(Default)]
pub struct ExternalIssuers {
    issuers: Vec<Arc<ExternalIssuer>>,
    by_iss: HashMap<String, usize>,
}

impl ExternalIssuers {
    /// The issuers of a config; an issuer whose settings did not change keeps its keys,
    /// endpoints and schedule from `previous` (no refetch on reload).
    pub fn build(configs: &[ExternalIssuerConfig], metrics: &Arc<Metrics>, previous: Option<&ExternalIssuers>) -> ExternalIssuers {
        let issuers: Vec<Arc<ExternalIssuer>> = configs
            .iter()
            .map(|c| {
                previous
                    .and_then(|p| p.issuers.iter().find(|i| i.config == *c))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ExternalIssuer::new(c.clone(), metrics.clone())))
            })
            .collect();
        ExternalIssuers {
            by_iss: issuers.iter().enumerate().map(|(i, x)| (x.config.issuer.clone(), i)).collect(),
            issuers,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    pub fn all(&self) -> &[Arc<ExternalIssuer>] {
        &self.issuers
    }

    pub fn find(&self, iss: &str) -> Option<&Arc<ExternalIssuer>> {
        self.by_iss.get(iss).map(|i| &self.issuers[*i])
    }

    pub fn has_fingerprint(&self, fingerprint: u64) -> bool {
        self.issuers.iter().any(|i| i.fingerprint == fingerprint)
    }

    pub fn introspecting(&self) -> impl Iterator<Item = &Arc<ExternalIssuer>> {
        self.issuers.iter().filter(|i| i.introspects())
    }

    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.is_ready())
    }

    /// Fetches every issuer's keys once (start-up); `Err` names the first issuer with
    /// `startup: fail` left without them.
    pub async fn fetch_all(&self) -> Result<(), String> {
        futures_util::future::join_all(self.issuers.iter().filter(|i| i.fetches_keys()).map(|i| i.refresh())).await;
        match self
            .issuers
            .iter()
            .find(|i| i.config.startup == IssuerStartup::Fail && !i.is_ready())
        {
            Some(i) => Err(format!("no keys for issuer {} (startup: fail)", i.name())),
            None => Ok(()),
        }
    }
}

/// The `iss` of a JWT, read without verifying anything (to choose the issuer).
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// Refreshes the key sets of the running config's issuers when due (`Cache-Control` within
/// `min_refresh`..`max_refresh`, sooner after a failure); requests never wait for it.
pub struct KeyRefresher {
    shared: Arc<crate::gateway::Shared>,
}

impl KeyRefresher {
    pub fn new(shared: Arc<crate::gateway::Shared>) -> Self {
        KeyRefresher { shared }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let gateway = self.shared.current();
            let Some(external) = gateway.verifier.external_issuers() else {
                continue;
            };
            let due = external
                .all()
                .iter()
                .filter(|i| i.fetches_keys() && i.keys.refresh_due())
                .map(|i| i.keys.fetch_once(None, || i.refresh()));
            futures_util::future::join_all(due).await;
        }
    }
}
