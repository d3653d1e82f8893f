//! Access-token verification with a bounded in-memory cache.
//!
//! A token is verified once: signature (with the algorithm of the key its `kid` names, never the
//! header's choice), `typ`, `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, required claims, and the
//! in-memory revocation list (by `jti`, and by grant for tokens issued from a code or refresh
//! token). The result is cached in moka until the token expires, so a repeated token costs a hash,
//! a lookup and a comparison of the revocation list's epoch; only after a revocation is a cached
//! token checked against the list again. Tokens that failed after costing a signature check are cached
//! negatively for a short time. An entry is keyed by a keyed BLAKE3 hash of the token: the cache
//! never holds bearer tokens, and the key is secret, so nobody can aim a collision at an entry.

use super::bearer::MAX_TOKEN_LEN;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use crate::issuers::{ExternalGrant, ExternalIssuers};
use crate::keys::KeyRing;
use crate::scope::ScopeSet;
use crate::store::{RevocationList, Revoked, Store, StoreError};
use crate::token::{AccessTokenClaims, ACCESS_TOKEN_TYP};
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use moka::sync::Cache;
use moka::Expiry;
use serde::Deserialize;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a verified token grants; shared by every token with the same client, person and scope,
/// so a million cached tokens of a few clients hold a few grants.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub client_id: Box<str>,
    /// The person the token is for (its `sub`); `None` for a client's own token.
    pub user_id: Option<Box<str>>,
    pub scopes: ScopeSet,
    /// `client_id`, the person and the scope claim as issued, as ready-made header values for
    /// `X-OADA-Client-Id`, `X-OADA-User-Id` and `X-OADA-Scope`: forwarding them upstream is then
    /// a reference-count increment, not a copy and re-validation per request.
    pub client_id_header: HeaderValue,
    pub user_id_header: Option<HeaderValue>,
    pub scope_header: HeaderValue,
    /// Who the client belongs to, for `X-OADA-Partner`, billing and per-partner limits.
    pub partner: Option<PartnerOf>,
    /// `X-OADA-Partner`: the partner's name or the software's id.
    pub partner_header: Option<HeaderValue>,
    /// The external issuer (`issuers[].issuer`) of the token; `None`: the gateway's own.
    pub issuer: Option<Box<str>>,
    /// `X-OADA-Issuer`: who issued the token (the gateway's own issuer, or the external one).
    pub issuer_header: HeaderValue,
}

/// The party behind a token's client, from the token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartnerOf {
    /// A partner configured in `gateway.yaml` (`partner` claim): removing the partner from the
    /// config refuses its tokens.
    Configured(Box<str>),
    /// A client registered with a software statement (`software_id` claim).
    Software(Box<str>),
}

impl PartnerOf {
    pub fn name(&self) -> &str {
        match self {
            PartnerOf::Configured(n) | PartnerOf::Software(n) => n,
        }
    }
}

/// A verified, unexpired, unrevoked access token.
#[derive(Debug, Clone)]
pub struct ValidToken {
    /// Unix time after which the token is refused (`exp` + leeway).
    pub valid_until: u64,
    pub grant: Arc<Grant>,
    /// Revocation-list hashes of its `jti` and (if any) its grant id; the first
    /// `revocation_key_count` count (none for other issuers' tokens).
    revocation_keys: [u64; 2],
    revocation_key_count: u8,
    /// The revocation-list epoch the token was last checked at.
    checked_epoch: u64,
    /// The signing key that verified it ([`key_fingerprint`]), or for another issuer's token
    /// that issuer's fingerprint.
    key: u64,
    /// Issued by an external issuer (`issuers:`).
    external: bool,
    /// The generation of the verifier (one per loaded config) that last found it valid.
    generation: u64,
}

impl ValidToken {
    fn revocation_keys(&self) -> &[u64] {
        &self.revocation_keys[..usize::from(self.revocation_key_count)]
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    UnknownKey,
    WrongAlgorithm,
    BadSignature,
    WrongType,
    CriticalHeader,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    NotYetValid,
    IssuedInFuture,
    Expired,
    Revoked,
    /// The token names a partner the current config does not have (removed since).
    UnknownPartner,
    /// Its issuer's introspection endpoint says it is not active.
    Inactive,
    /// Issued by an external issuer the current config no longer lists.
    UnknownIssuer,
    /// The route does not accept tokens of its issuer (`routes[].issuers`).
    IssuerNotAccepted,
}

impl TokenRejection {
    /// `error_description` for RFC 6750 responses: precise enough to debug, nothing about keys.
    pub fn description(self) -> &'static str {
        match self {
            TokenRejection::Malformed => "the access token is not a well-formed JWT",
            TokenRejection::UnknownKey => "the access token was not signed by a key of its issuer",
            TokenRejection::WrongAlgorithm => "the access token's algorithm is not the one of its key",
            TokenRejection::BadSignature => "the access token's signature is invalid",
            TokenRejection::WrongType => "the token is not an access token (typ must be at+jwt)",
            TokenRejection::CriticalHeader => "the access token has critical header parameters (crit) this gateway does not understand",
            TokenRejection::WrongIssuer => "the access token was issued by another issuer",
            TokenRejection::WrongAudience => "the access token is for another audience",
            TokenRejection::MissingClaim => "the access token lacks a required claim",
            TokenRejection::NotYetValid => "the access token is not valid yet",
            TokenRejection::IssuedInFuture => "the access token was issued in the future",
            TokenRejection::Expired => "the access token expired",
            TokenRejection::Revoked => "the access token was revoked",
            TokenRejection::UnknownPartner => "the access token was issued to a partner that is no longer configured",
            TokenRejection::Inactive => "the access token is not active",
            TokenRejection::UnknownIssuer => "the access token was issued by an issuer that is no longer configured",
            TokenRejection::IssuerNotAccepted => "this resource does not accept access tokens of this issuer",
        }
    }

    /// The refusal a failed `jsonwebtoken` check means.
    pub fn of_jwt_error(kind: &ErrorKind) -> TokenRejection {
        match kind {
            ErrorKind::InvalidSignature => TokenRejection::BadSignature,
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
            ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
            ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
            ErrorKind::InvalidAlgorithm => TokenRejection::WrongAlgorithm,
            ErrorKind::MissingRequiredClaim(_) => TokenRejection::MissingClaim,
            _ => TokenRejection::Malformed,
        }
    }

    /// Rejections whose cause cost a signature check: worth remembering for a while.
    fn worth_caching(self) -> bool {
        !matches!(
            self,
            TokenRejection::Malformed
                | TokenRejection::UnknownKey
                | TokenRejection::WrongAlgorithm
                | TokenRejection::CriticalHeader
        )
    }
}

/// Why verification could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{}", .0.description())]
    Rejected(TokenRejection),
    /// The revocation list could not be read; the token is refused (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token's external issuer cannot be consulted (no keys, introspection down): refused
    /// for now (fail closed).
    #[error(transparent)]
    Issuer(#[from] crate::issuers::IssuerUnavailable),
}

/// A successful verification.
#[derive(Debug, Clone)]
pub struct Verified {
    pub token: ValidToken,
    /// Answered from the cache without a signature check.
    pub cached: bool,
}

/// Claims read from an access token; the rest are checked by `Validation` or ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    client_id: Option<String>,
    scope: Option<String>,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    /// Only tokens issued for a person carry it; their `sub` is the person.
    auth_time: Option<u64>,
    grant_id: Option<String>,
    partner: Option<String>,
    software_id: Option<String>,
}

/// Cache key: 128 bits of a keyed BLAKE3 hash of the token.
pub type TokenKey = u128;

/// Cache keys are already uniformly random and secret: hashing them again buys nothing.
#[derive(Clone, Default)]
pub struct PrehashedKey;

#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

impl BuildHasher for PrehashedKey {
    type Hasher = PrehashedHasher;

    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

/// A remembered refusal and how long it is remembered: `cache.negative_ttl`, or an issuer's
/// `introspection.inactive_cache` for its inactive tokens.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    rejection: TokenRejection,
    ttl: Duration,
}

struct ForItsTtl;

impl Expiry<TokenKey, Refusal> for ForItsTtl {
    fn expire_after_create(&self, _key: &TokenKey, value: &Refusal, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct UntilTokenExpiry;

impl Expiry<TokenKey, ValidToken> for UntilTokenExpiry {
    fn expire_after_create(&self, _key: &TokenKey, value: &ValidToken, _created_at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(value.valid_until.saturating_sub(crate::ids::unix_now())))
    }
}

/// Verifier settings.
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub max_entries: u64,
    pub negative_ttl: Duration,
    pub negative_max_entries: u64,
    /// The issuer's token lifetime (grant revocations last this long).
    pub token_lifetime: Duration,
    /// With a shared store: what to do while the revocation list may be stale, and how long
    /// cached tokens may be served then.
    pub outage: Option<(crate::config::OutagePolicy, Duration)>,
    /// The configured partners: a token whose `partner` claim names another is refused.
    pub partners: Vec<String>,
}

/// What a cached answer depends on besides the keys and partners: caches built for other
/// settings are not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheSettings {
    issuer: String,
    audience: String,
    leeway: Duration,
    max_entries: u64,
    negative_ttl: Duration,
    negative_max_entries: u64,
}

/// The caches a verifier fills. A reload hands them to the next config's verifier when the
/// settings they depend on are unchanged, so that valid tokens stay cached; entries made under
/// an earlier config are checked against the new keys and partners on their next use.
pub struct TokenCaches {
    settings: CacheSettings,
    hash_key: [u8; 32],
    cache: Cache<TokenKey, ValidToken, PrehashedKey>,
    negative: Cache<TokenKey, Refusal, PrehashedKey>,
    grants: Cache<String, Arc<Grant>>,
}

impl TokenCaches {
    fn new(settings: CacheSettings) -> Self {
        let mut hash_key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut hash_key).expect("the system random number generator failed");
        TokenCaches {
            hash_key,
            cache: Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(UntilTokenExpiry)
                .build_with_hasher(PrehashedKey),
            negative: Cache::builder()
                .max_capacity(settings.negative_max_entries)
                .expire_after(ForItsTtl)
                .build_with_hasher(PrehashedKey),
            grants: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            settings,
        }
    }
}

/// A short fingerprint of a signing key: its `kid` and its public key (a key replaced under the
/// same `kid` is another key).
fn key_fingerprint(key: &crate::keys::SigningKey) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(key.kid.as_bytes());
    h.update(&[0]);
    h.update(key.public.thumbprint().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct TokenVerifier {
    keys: Arc<KeyRing>,
    /// [`key_fingerprint`] of each key, in key-ring order.
    fingerprints: Vec<u64>,
    max_token_lifetime: u64,
    /// How long cached tokens are served while the revocation list is stale (0: not at all).
    serve_stale_for: u64,
    /// One prepared `Validation` per key, in key-ring order.
    validations: Vec<Validation>,
    leeway: u64,
    partners: std::collections::HashSet<Box<str>>,
    /// Distinct for every verifier: cache entries of another generation are checked again.
    generation: u64,
    caches: Arc<TokenCaches>,
    store: Arc<dyn Store>,
    revocations: Arc<RevocationList>,
    /// The gateway's own `iss`.
    issuer: Box<str>,
    /// External issuers whose tokens are accepted too (`issuers:`); `None`: none configured.
    external: Option<Arc<ExternalIssuers>>,
}

impl TokenVerifier {
    pub fn new(keys: Arc<KeyRing>, config: &VerifierConfig, store: Arc<dyn Store>) -> Self {
        Self::with_caches(keys, config, store, None)
    }

    /// A verifier for a new config that keeps `previous`'s caches when they were built for the
    /// same issuer, audience, leeway and cache sizes.
    pub fn succeeding(keys: Arc<KeyRing>, config: &VerifierConfig, store: Arc<dyn Store>, previous: &TokenVerifier) -> Self {
        Self::with_caches(keys, config, store, Some(previous.caches.clone()))
    }

    fn with_caches(keys: Arc<KeyRing>, config: &VerifierConfig, store: Arc<dyn Store>, caches: Option<Arc<TokenCaches>>) -> Self {
        let validations = keys
            .keys()
            .iter()
            .map(|k| {
                let mut v = Validation::new(k.alg);
                v.leeway = config.leeway.as_secs();
                v.validate_nbf = true;
                v.set_issuer(&[&config.issuer]);
                v.set_audience(&[&config.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                v
            })
            .collect();
        let settings = CacheSettings {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
            max_entries: config.max_entries,
            negative_ttl: config.negative_ttl,
            negative_max_entries: config.negative_max_entries,
        };
        let caches = match caches {
            Some(caches) if caches.settings == settings => {
                // a refusal may not hold under the new config (a key or partner added back)
                caches.negative.invalidate_all();
                caches
            }
            _ => Arc::new(TokenCaches::new(settings)),
        };
        TokenVerifier {
            fingerprints: keys.keys().iter().map(key_fingerprint).collect(),
            keys,
            max_token_lifetime: config.token_lifetime.as_secs(),
            serve_stale_for: match config.outage {
                Some((crate::config::OutagePolicy::ServeCached, max_stale)) => max_stale.as_secs(),
                _ => 0,
            },
            validations,
            leeway: config.leeway.as_secs(),
            partners: config.partners.iter().map(|p| p.clone().into_boxed_str()).collect(),
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            caches,
            revocations: store.revocations(),
            store,
            issuer: config.issuer.clone().into_boxed_str(),
            external: None,
        }
    }

    /// Accepts the tokens of `issuers` too.
    pub fn with_external_issuers(mut self, issuers: Arc<ExternalIssuers>) -> Self {
        self.external = (!issuers.is_empty()).then_some(issuers);
        self
    }

    /// The gateway's own `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn external_issuers(&self) -> Option<&Arc<ExternalIssuers>> {
        self.external.as_ref()
    }

    /// Does this verifier's config still accept a token found valid under an earlier one: its
    /// key is still configured, and so is its partner?
    fn still_accepts(&self, valid: &ValidToken) -> Result<(), TokenRejection> {
        if valid.external {
            return match &self.external {
                Some(external) if external.has_fingerprint(valid.key) => Ok(()),
                _ => Err(TokenRejection::UnknownIssuer),
            };
        }
        if !self.fingerprints.contains(&valid.key) {
            return Err(TokenRejection::UnknownKey);
        }
        self.partner_known(valid.grant.partner.as_ref())
    }

    fn partner_known(&self, partner: Option<&PartnerOf>) -> Result<(), TokenRejection> {
        match partner {
            Some(PartnerOf::Configured(name)) if !self.partners.contains(name) => Err(TokenRejection::UnknownPartner),
            _ => Ok(()),
        }
    }

    pub fn key_of(&self, token: &str) -> TokenKey {
        let hash = blake3::keyed_hash(&self.caches.hash_key, token.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash.as_bytes()[..16]);
        u128::from_le_bytes(first)
    }

    /// The cached answer for `token`, if any: no signature check, no allocation.
    pub fn lookup(&self, key: TokenKey, now: u64) -> Option<Result<ValidToken, TokenRejection>> {
        let caches = &*self.caches;
        if let Some(valid) = caches.cache.get(&key) {
            if valid.valid_until <= now {
                caches.cache.invalidate(&key);
                return Some(Err(TokenRejection::Expired));
            }
            let epoch = self.revocations.epoch();
            if valid.checked_epoch != epoch || valid.generation != self.generation {
                // something was revoked, or the config reloaded, since this token was checked:
                // check it again, once
                let refusal = if self.revocations.any_revoked(valid.revocation_keys(), now) {
                    Err(TokenRejection::Revoked)
                } else {
                    self.still_accepts(&valid)
                };
                if let Err(rejection) = refusal {
                    caches.cache.invalidate(&key);
                    self.refuse(key, rejection);
                    return Some(Err(rejection));
                }
                let mut rechecked = valid.clone();
                rechecked.checked_epoch = epoch;
                rechecked.generation = self.generation;
                caches.cache.insert(key, rechecked);
            }
            return Some(Ok(valid));
        }
        caches.negative.get(&key).map(|r| Err(r.rejection))
    }

    /// Verifies `token` at Unix time `now`, from the cache when possible: the gateway's own
    /// tokens, and with `issuers:` other issuers' JWTs (routed by `iss`) and opaque tokens
    /// (introspected).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Verified, VerifyError> {
        let Some(external) = &self.external else {
            return self.verify_now(token, now);
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Rejected(TokenRejection::Malformed));
        }
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return self.verify_opaque(external, token, now).await;
        }
        let key = self.key_of(token);
        match self.lookup(key, now) {
            // other issuers' tokens do not depend on the revocation list
            Some(Ok(valid)) if valid.external => return Ok(Verified { token: valid, cached: true }),
            cached @ Some(_) => return self.verify_own(token, key, cached, now),
            None => {}
        }
        match crate::issuers::peek_issuer(token) {
            Some(iss) if *iss != *self.issuer => match external.find(&iss) {
                Some(issuer) => {
                    let outcome = issuer.verify_jwt(token, self.leeway, now).await?;
                    self.settle_external(issuer, key, outcome)
                }
                None => {
                    self.refuse(key, TokenRejection::WrongIssuer);
                    Err(VerifyError::Rejected(TokenRejection::WrongIssuer))
                }
            },
            _ => self.verify_own(token, key, None, now),
        }
    }

    /// An opaque token: from the cache under each introspecting issuer's key, else asked of
    /// each in turn until one says it is active. Every answer is cached under the issuer's key
    /// (the token and the issuer), active ones until they end or `cache_max`, inactive ones for
    /// `inactive_cache`. An issuer that cannot answer makes the token 503, unless another
    /// issuer vouches for it.
    async fn verify_opaque(&self, external: &ExternalIssuers, token: &str, now: u64) -> Result<Verified, VerifyError> {
        let base = self.key_of(token);
        let mut refusal = None;
        let mut unanswered = Vec::new();
        for issuer in external.introspecting() {
            match self.lookup(base ^ issuer.salt, now) {
                Some(Ok(valid)) => return Ok(Verified { token: valid, cached: true }),
                Some(Err(rejection)) => refusal = Some(rejection),
                None => unanswered.push(issuer),
            }
        }
        let mut unavailable = None;
        for issuer in unanswered {
            match issuer.introspect(token, base ^ issuer.salt, self.leeway, now).await {
                Ok(Ok(grant)) => return self.settle_external(issuer, base ^ issuer.salt, Ok(grant)),
                Ok(Err(rejection)) => {
                    if let Some(introspection) = &issuer.config.introspection {
                        self.refuse_for(base ^ issuer.salt, rejection, introspection.inactive_cache);
                    }
                    refusal = Some(rejection);
                }
                Err(e) => unavailable = Some(e),
            }
        }
        if let Some(e) = unavailable {
            return Err(VerifyError::Issuer(e));
        }
        Err(VerifyError::Rejected(refusal.unwrap_or(TokenRejection::Malformed)))
    }

    /// Remembers a refusal for `cache.negative_ttl`.
    fn refuse(&self, key: TokenKey, rejection: TokenRejection) {
        self.refuse_for(key, rejection, self.caches.settings.negative_ttl);
    }

    /// Remembers a refusal for `ttl` (nothing for zero).
    fn refuse_for(&self, key: TokenKey, rejection: TokenRejection, ttl: Duration) {
        if !ttl.is_zero() {
            self.caches.negative.insert(key, Refusal { rejection, ttl });
        }
    }

    /// Caches the outcome of checking another issuer's token and answers with it.
    fn settle_external(
        &self,
        issuer: &crate::issuers::ExternalIssuer,
        key: TokenKey,
        outcome: Result<ExternalGrant, TokenRejection>,
    ) -> Result<Verified, VerifyError> {
        let valid = outcome.and_then(|g| {
            // an external issuer's `frank` is not the gateway's `frank` unless configured so
            let user = match &issuer.config.subject_prefix {
                Some(prefix) => g.user.map(|sub| format!("{prefix}:{sub}")),
                None => g.user,
            };
            let grant = self.grant(g.client_id, user, g.scope, None, Some(issuer.name()))?;
            Ok(ValidToken {
                valid_until: g.valid_until,
                grant,
                revocation_keys: [0, 0],
                revocation_key_count: 0,
                checked_epoch: self.revocations.epoch(),
                key: issuer.fingerprint,
                external: true,
                generation: self.generation,
            })
        });
        self.remember(key, valid)
    }

    /// Caches the outcome of a full check under `key` (refusals only when they cost a
    /// signature check) and answers with it.
    fn remember(&self, key: TokenKey, outcome: Result<ValidToken, TokenRejection>) -> Result<Verified, VerifyError> {
        match outcome {
            Ok(valid) => {
                self.caches.cache.insert(key, valid.clone());
                Ok(Verified { token: valid, cached: false })
            }
            Err(rejection) => {
                if rejection.worth_caching() {
                    self.refuse(key, rejection);
                }
                Err(VerifyError::Rejected(rejection))
            }
        }
    }

    /// [`Self::verify`] without an `await`: nothing on the way needs one.
    pub fn verify_now(&self, token: &str, now: u64) -> Result<Verified, VerifyError> {
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(VerifyError::Rejected(TokenRejection::Malformed));
        }
        let key = self.key_of(token);
        let cached = self.lookup(key, now);
        self.verify_own(token, key, cached, now)
    }

    /// A token of the gateway's own, given what the cache said of it.
    fn verify_own(
        &self,
        token: &str,
        key: TokenKey,
        cached: Option<Result<ValidToken, TokenRejection>>,
        now: u64,
    ) -> Result<Verified, VerifyError> {
        if let Some(since) = self.revocations.stale_since() {
            // The revocation list may miss revocations: a cached token is served for a while
            // (store.on_outage: serve_cached), anything else waits for the store.
            return match cached {
                Some(Ok(token)) if now.saturating_sub(since) < self.serve_stale_for => Ok(Verified { token, cached: true }),
                Some(Err(rejection)) => Err(VerifyError::Rejected(rejection)),
                _ => Err(VerifyError::Store(StoreError::Backend("revocations cannot be checked while the store is away".into()))),
            };
        }
        match cached {
            Some(Ok(token)) => return Ok(Verified { token, cached: true }),
            Some(Err(rejection)) => return Err(VerifyError::Rejected(rejection)),
            None => {}
        }
        // The epoch is read before the list is: a revocation landing after the check bumps it,
        // and the cached entry is then checked again on its next use.
        let epoch = self.revocations.epoch();
        let result = self.check_signature_and_claims(token, now).and_then(|mut valid| {
            if self.revocations.any_revoked(valid.revocation_keys(), now) {
                return Err(TokenRejection::Revoked);
            }
            valid.checked_epoch = epoch;
            Ok(valid)
        });
        self.remember(key, result)
    }

    /// Header checks (kid, the key's own algorithm, `typ`), signature and registered claims
    /// (`iss`, `aud`, `exp`/`nbf` with leeway), then deserializes the claims as `T`.
    /// `key_index` is set to the index of the key that verified it.
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str, key_index: &mut usize) -> Result<T, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        // `crit` names extensions the verifier must understand; it understands none (RFC 7515
        // §4.1.11). Duplicate header members are refused while looking.
        let header_json = token
            .split('.')
            .next()
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| crate::json::from_slice(&bytes).ok())
            .ok_or(TokenRejection::Malformed)?;
        if header_json.get("crit").is_some() {
            return Err(TokenRejection::CriticalHeader);
        }
        let kid = header.kid.as_deref().ok_or(TokenRejection::UnknownKey)?;
        let index = self
            .keys
            .keys()
            .iter()
            .position(|k| k.kid == kid)
            .ok_or(TokenRejection::UnknownKey)?;
        *key_index = index;
        let key = &self.keys.keys()[index];
        // The key decides the algorithm; a header naming another one (HS256 with the public key
        // as secret, `none`, ...) is refused before any verification.
        if header.alg != key.alg {
            return Err(TokenRejection::WrongAlgorithm);
        }
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt"))
        {
            return Err(TokenRejection::WrongType);
        }
        jsonwebtoken::decode::<T>(token, &key.decoding, &self.validations[index])
            .map(|data| data.claims)
            .map_err(|e| TokenRejection::of_jwt_error(e.kind()))
    }

    /// What a cache miss costs before the revocation check: signature and claim checks. Public
    /// for benchmarks; requests go through [`Self::verify`].
    pub fn check_signature_and_claims(&self, token: &str, now: u64) -> Result<ValidToken, TokenRejection> {
        let mut key_index = 0;
        let claims: Claims = self.decode(token, &mut key_index)?;
        let (Some(client_id), Some(scope), Some(jti)) = (claims.client_id, claims.scope, claims.jti) else {
            return Err(TokenRejection::MissingClaim);
        };
        if claims.iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(TokenRejection::IssuedInFuture);
        }
        let valid_until = claims.exp.saturating_add(self.leeway);
        if valid_until <= now {
            return Err(TokenRejection::Expired);
        }
        let user = claims.auth_time.map(|_| claims.sub);
        let partner = match (claims.partner, claims.software_id) {
            (Some(name), _) => Some(PartnerOf::Configured(name.into_boxed_str())),
            (None, Some(id)) => Some(PartnerOf::Software(id.into_boxed_str())),
            (None, None) => None,
        };
        self.partner_known(partner.as_ref())?;
        let grant = self.grant(client_id, user, scope, partner, None)?;
        let grant_hash = claims.grant_id.as_deref().map(|g| self.revocations.hash(Revoked::Grant(g)));
        Ok(ValidToken {
            valid_until,
            grant,
            revocation_keys: [self.revocations.hash(Revoked::Token(&jti)), grant_hash.unwrap_or(0)],
            revocation_key_count: if grant_hash.is_some() { 2 } else { 1 },
            checked_epoch: 0,
            key: self.fingerprints[key_index],
            external: false,
            generation: self.generation,
        })
    }

    /// Full claims of a token that is valid and not revoked right now (introspection,
    /// revocation); no cache involved.
    pub async fn introspect(&self, token: &str, now: u64) -> Result<AccessTokenClaims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Rejected(TokenRejection::Malformed));
        }
        let claims: AccessTokenClaims = self.decode(token, &mut 0).map_err(VerifyError::Rejected)?;
        let partner = claims.partner.as_deref().map(|p| PartnerOf::Configured(p.into()));
        self.partner_known(partner.as_ref()).map_err(VerifyError::Rejected)?;
        if claims.iat > now + self.leeway {
            return Err(VerifyError::Rejected(TokenRejection::IssuedInFuture));
        }
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(VerifyError::Rejected(TokenRejection::Expired));
        }
        let revoked = self.revocations.is_revoked(Revoked::Token(&claims.jti), now)
            || claims
                .grant_id
                .as_deref()
                .is_some_and(|g| self.revocations.is_revoked(Revoked::Grant(g), now));
        if revoked {
            return Err(VerifyError::Rejected(TokenRejection::Revoked));
        }
        Ok(claims)
    }

    fn grant(
        &self,
        client_id: String,
        user: Option<String>,
        scope: String,
        partner: Option<PartnerOf>,
        issuer: Option<&str>,
    ) -> Result<Arc<Grant>, TokenRejection> {
        let (kind, name) = match &partner {
            Some(PartnerOf::Configured(n)) => ("p", &**n),
            Some(PartnerOf::Software(n)) => ("s", &**n),
            None => ("", ""),
        };
        let key = format!(
            "{client_id}\n{}\n{scope}\n{kind}{name}\n{}",
            user.as_deref().unwrap_or(""),
            issuer.unwrap_or("")
        );
        let grants = &self.caches.grants;
        if let Some(g) = grants.get(&key) {
            return Ok(g);
        }
        let scopes = ScopeSet::parse(&scope).map_err(|_| TokenRejection::Malformed)?;
        let header = |value: &str| HeaderValue::from_str(value).map_err(|_| TokenRejection::Malformed);
        let grant = Arc::new(Grant {
            client_id_header: header(&client_id)?,
            user_id_header: user.as_deref().map(header).transpose()?,
            scope_header: header(&scope)?,
            partner_header: partner.as_ref().map(|p| header(p.name())).transpose()?,
            issuer_header: header(issuer.unwrap_or(&self.issuer))?,
            client_id: client_id.into_boxed_str(),
            user_id: user.map(String::into_boxed_str),
            scopes,
            partner,
            issuer: issuer.map(Into::into),
        });
        grants.insert(key, grant.clone());
        Ok(grant)
    }

    /// Revokes an access token (whose `jti` and `exp` the caller verified): recorded in the store
    /// (which updates the revocation list), and dropped from this process's cache at once.
    pub async fn revoke(&self, token: &str, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.store.revoke(Revoked::Token(jti), exp.saturating_add(self.leeway)).await?;
        let key = self.key_of(token);
        self.caches.cache.invalidate(&key);
        self.refuse(key, TokenRejection::Revoked);
        Ok(())
    }

    /// Revokes every access token of a grant (issued from one code or refresh-token family)
    /// until `until`; cached ones are refused from their next use on.
    pub async fn revoke_grant(&self, grant_id: &str, until: u64) -> Result<(), StoreError> {
        self.store.revoke(Revoked::Grant(grant_id), until.saturating_add(self.leeway)).await
    }

    /// The longest an access token lives: what a grant revocation must outlast.
    pub fn max_token_lifetime(&self) -> u64 {
        self.max_token_lifetime
    }

    /// Number of positive cache entries (approximate; for tests and diagnostics).
    pub fn cached_entries(&self) -> u64 {
        self.caches.cache.run_pending_tasks();
        self.caches.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, SigningKey};
    use crate::store::memory::MemoryStore;
    use crate::token::TokenIssuer;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::Algorithm;

    const ISS: &str = "http://127.0.0.1:8080";

    fn ring(alg: Algorithm) -> Arc<KeyRing> {
        let pem = generate::private_key_pem(alg).unwrap();
        Arc::new(KeyRing::new(vec![SigningKey::from_pem("k1", alg, pem.as_bytes()).unwrap()]))
    }

    fn setup(alg: Algorithm) -> (TokenVerifier, TokenIssuer, Arc<KeyRing>) {
        let keys = ring(alg);
        let verifier = TokenVerifier::new(keys.clone(), &config_with(&["mm"]), Arc::new(MemoryStore::new(10, 1000)));
        let issuer = TokenIssuer::new(keys.clone(), ISS, ISS, Duration::from_secs(60));
        (verifier, issuer, keys)
    }

    fn claims(now: u64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISS.into(),
            sub: "c1".into(),
            client_id: "c1".into(),
            aud: ISS.into(),
            scope: "weather.observations:read".into(),
            iat: now,
            exp: now + 60,
            jti: "j1".into(),
            auth_time: None,
            grant_id: None,
            partner: None,
            software_id: None,
        }
    }

    fn rejection(r: Result<Verified, VerifyError>) -> TokenRejection {
        match r {
            Err(VerifyError::Rejected(x)) => x,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_token_then_cache_hit() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let (v, issuer, _) = setup(alg);
            let now = crate::ids::unix_now();
            let scope = ScopeSet::parse("weather.observations:read").unwrap();
            let t = issuer.issue("c1", &scope, now).unwrap();
            let first = v.verify(&t.access_token, now).await.unwrap();
            assert!(!first.cached);
            assert_eq!(&*first.token.grant.client_id, "c1");
            let second = v.verify(&t.access_token, now).await.unwrap();
            assert!(second.cached, "{alg:?}: the second verification is a cache hit");
            assert!(Arc::ptr_eq(&first.token.grant, &second.token.grant));
        }
    }

    #[tokio::test]
    async fn cached_token_is_refused_once_expired() {
        let (v, issuer, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        let mut c = claims(now);
        c.exp = now + 5;
        let token = issuer.sign(&c).unwrap();
        assert!(v.verify(&token, now).await.is_ok());
        assert_eq!(rejection(v.verify(&token, now + 6).await), TokenRejection::Expired);
    }

    #[tokio::test]
    async fn claim_checks() {
        let (v, issuer, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        let cases: Vec<(fn(&mut AccessTokenClaims), TokenRejection)> = vec![
            (|c| c.iss = "https://evil.example".into(), TokenRejection::WrongIssuer),
            (|c| c.aud = "https://other.example".into(), TokenRejection::WrongAudience),
            (|c| c.exp = c.iat - 10, TokenRejection::Expired),
            (|c| c.iat += 3600, TokenRejection::IssuedInFuture),
        ];
        for (mutate, expected) in cases {
            let mut c = claims(now);
            mutate(&mut c);
            let token = issuer.sign(&c).unwrap();
            assert_eq!(rejection(v.verify(&token, now).await), expected);
        }
    }

    #[tokio::test]
    async fn foreign_key_and_algorithm_confusion() {
        let (v, _, keys) = setup(Algorithm::RS256);
        let now = crate::ids::unix_now();
        // same kid, different key
        let (_, other_issuer, _) = setup(Algorithm::RS256);
        let forged = other_issuer.sign(&claims(now)).unwrap();
        assert_eq!(rejection(v.verify(&forged, now).await), TokenRejection::BadSignature);
        // HS256 keyed with the public key's bytes
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        header.typ = Some("at+jwt".into());
        let public = serde_json::to_vec(&keys.jwks(std::time::SystemTime::now())).unwrap();
        let hs = jsonwebtoken::encode(&header, &claims(now), &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(rejection(v.verify(&hs, now).await), TokenRejection::WrongAlgorithm);
        // alg none
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now)).unwrap());
        let unsigned = format!("{none_header}.{body}.");
        assert_eq!(rejection(v.verify(&unsigned, now).await), TokenRejection::Malformed);
        assert_eq!(rejection(v.verify("garbage", now).await), TokenRejection::Malformed);
        // a correctly signed token with a critical extension the gateway does not understand
        let mut crit = jsonwebtoken::Header::new(keys.signer().alg);
        crit.kid = Some(keys.signer().kid.clone());
        crit.typ = Some("at+jwt".into());
        crit.crit = Some(vec!["exp".into()]);
        let critical = jsonwebtoken::encode(&crit, &claims(now), &keys.signer().encoding).unwrap();
        assert_eq!(rejection(v.verify(&critical, now).await), TokenRejection::CriticalHeader);
    }

    #[tokio::test]
    async fn revocation_beats_the_cache() {
        let (v, issuer, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        let t = issuer.issue("c1", &ScopeSet::parse("a:read").unwrap(), now).unwrap();
        assert!(v.verify(&t.access_token, now).await.is_ok());
        v.revoke(&t.access_token, &t.jti, now + 60).await.unwrap();
        assert_eq!(rejection(v.verify(&t.access_token, now).await), TokenRejection::Revoked);
    }

    #[tokio::test]
    async fn a_person_s_token_names_the_person_and_dies_with_its_grant() {
        let (v, issuer, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        let person = crate::token::Person {
            user_id: "frank",
            auth_time: now,
            grant_id: "g1",
        };
        let t = issuer
            .issue_for("app", None, Some(&person), &ScopeSet::parse("a:read").unwrap(), now)
            .unwrap();
        let verified = v.verify(&t.access_token, now).await.unwrap();
        assert_eq!(verified.token.grant.user_id.as_deref(), Some("frank"));
        assert_eq!(verified.token.grant.client_id.as_ref(), "app");
        assert!(v.verify(&t.access_token, now).await.unwrap().cached);
        // a client's own token names no person
        let own = issuer.issue("app", &ScopeSet::parse("a:read").unwrap(), now).unwrap();
        assert_eq!(v.verify(&own.access_token, now).await.unwrap().token.grant.user_id, None);
        // revoking the grant reaches the cached token on its next use
        v.revoke_grant("g1", now + 60).await.unwrap();
        assert_eq!(rejection(v.verify(&t.access_token, now).await), TokenRejection::Revoked);
        assert!(v.verify(&own.access_token, now).await.is_ok(), "other tokens are unaffected");
    }

    #[tokio::test]
    async fn bad_signatures_are_cached_negatively() {
        let (v, issuer, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        let token = issuer.sign(&claims(now)).unwrap();
        // change one character in the middle of the signature (full 6-bit symbols there)
        let at = token.rfind('.').unwrap() + 10;
        let mut tampered = token.clone().into_bytes();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(rejection(v.verify(&tampered, now).await), TokenRejection::BadSignature);
        assert!(matches!(v.lookup(v.key_of(&tampered), now), Some(Err(TokenRejection::BadSignature))));
    }

    #[test]
    fn each_refusal_is_remembered_for_its_own_time() {
        let (v, _, _) = setup(Algorithm::ES256);
        let now = crate::ids::unix_now();
        v.refuse_for(1, TokenRejection::Inactive, Duration::from_millis(50));
        v.refuse(2, TokenRejection::BadSignature);
        v.refuse_for(3, TokenRejection::Inactive, Duration::ZERO);
        assert!(matches!(v.lookup(1, now), Some(Err(TokenRejection::Inactive))));
        assert!(v.lookup(3, now).is_none(), "a zero time remembers nothing");
        std::thread::sleep(Duration::from_millis(120));
        assert!(v.lookup(1, now).is_none(), "an inactive answer ends after inactive_cache");
        assert!(matches!(v.lookup(2, now), Some(Err(TokenRejection::BadSignature))), "negative_ttl is 10 s");
    }

    fn config_with(partners: &[&str]) -> VerifierConfig {
        VerifierConfig {
            issuer: ISS.into(),
            audience: ISS.into(),
            leeway: Duration::from_secs(0),
            max_entries: 1000,
            negative_ttl: Duration::from_secs(10),
            negative_max_entries: 1000,
            token_lifetime: Duration::from_secs(60),
            outage: None,
            partners: partners.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn a_reload_keeps_valid_tokens_cached_and_refuses_removed_partners_and_keys() {
        let (v, issuer, keys) = setup(Algorithm::ES256);
        let store = v.store.clone();
        let now = crate::ids::unix_now();
        let scope = ScopeSet::parse("a:read").unwrap();
        let of = |name| issuer.issue_for("c1", Some(crate::token::PartnerClaim::Configured(name)), None, &scope, now).unwrap().access_token;
        let mm = of("mm");
        assert_eq!(rejection(v.verify(&of("gone"), now).await), TokenRejection::UnknownPartner);
        let first = v.verify(&mm, now).await.unwrap();
        assert_eq!(first.token.grant.partner, Some(PartnerOf::Configured("mm".into())));
        assert_eq!(first.token.grant.partner_header.as_ref().unwrap(), "mm");

        // same keys and partners: still a cache hit under the next config
        let next = TokenVerifier::succeeding(keys.clone(), &config_with(&["mm", "other"]), store.clone(), &v);
        assert!(next.verify(&mm, now).await.unwrap().cached);

        // the partner removed: refused from the next request, although cached
        let without = TokenVerifier::succeeding(keys.clone(), &config_with(&["other"]), store.clone(), &next);
        assert_eq!(rejection(without.verify(&mm, now).await), TokenRejection::UnknownPartner);
        // and back again: accepted again (the refusal was not kept)
        let back = TokenVerifier::succeeding(keys.clone(), &config_with(&["mm"]), store.clone(), &without);
        assert!(back.verify(&mm, now).await.is_ok());

        // the signing key removed (replaced by another under the same kid): refused
        let replaced = ring(Algorithm::ES256);
        let rotated = TokenVerifier::succeeding(replaced, &config_with(&["mm"]), store.clone(), &back);
        assert_eq!(rejection(rotated.verify(&mm, now).await), TokenRejection::UnknownKey);

        // other cache settings: fresh caches, the token verified again from scratch
        let mut bigger = config_with(&["mm"]);
        bigger.max_entries = 2000;
        let fresh = TokenVerifier::succeeding(keys, &bigger, store, &back);
        let again = fresh.verify(&mm, now).await.unwrap();
        assert!(!again.cached);
    }
}
