//! JWT assertions from clients (RFC 7523 §3), for `private_key_jwt` and `client_secret_jwt`
//! client authentication and the `jwt-bearer` grant alike: signed by a key of the client's trusted
//! document with an allowed algorithm (or, HMAC, with the client's own shared secret, never with a
//! public key); `iss` = `sub` = client_id; `aud` names the token endpoint or the issuer; `exp`
//! present, not past, not too far ahead; `jti` present and never accepted twice while the
//! assertion lives.
//!
//! Also OADA's JWS `client_secret` of the code exchange (seed 003): signed by a key of the client's
//! document, `ac` = the code being exchanged, `aud` the token endpoint, `iss` the client_id, a
//! `jti`, and `iat`/`nbf` instead of `exp`: it is accepted for `max_assertion_lifetime` after its
//! `iat`/`nbf`, and its `jti` remembered that long.

use super::clients::{Client, ClientRegistry};
use super::error::{OAuthError, OAuthErrorCode};
use super::jws::{audience_contains, numeric_date, Jws, JwsError};
use crate::config::ClientSecret;
use crate::store::{Store, StoreError};
use std::borrow::Cow;

/// Longest `jti` remembered.
const MAX_JTI_LEN: usize = 256;

/// What an assertion must satisfy.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// Accepted `aud` values: the token endpoint URL and the issuer.
    pub audiences: Vec<String>,
    pub leeway: u64,
    pub max_lifetime: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionFailure {
    Jws(JwsError),
    MissingSubject,
    UnknownClient,
    NoKeys,
    NoSharedSecret,
    UnknownKey,
    WrongCode,
    MissingIssuedAt,
    KeysUnavailable(String),
    WrongIssuer,
    WrongSubject,
    WrongAudience,
    MissingExp,
    Expired,
    TooLongLived(u64),
    NotYetValid,
    IssuedInFuture,
    MissingJti,
    BadClaim(String),
    Replayed,
    Store(StoreError),
}

impl AssertionFailure {
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            AssertionFailure::Jws(e) => format!("client assertion: {e}").into(),
            AssertionFailure::MissingSubject => "the client assertion has no `sub` claim naming the client".into(),
            AssertionFailure::UnknownClient => "the client assertion names an unknown or expired client_id".into(),
            AssertionFailure::NoKeys => "the client has no registered public keys".into(),
            AssertionFailure::NoSharedSecret => "an HMAC-signed assertion needs a client secret from the gateway's environment (client_secret_jwt)".into(),
            AssertionFailure::WrongCode => "the client_secret's `ac` is not the code being exchanged".into(),
            AssertionFailure::MissingIssuedAt => "the client_secret has neither `iat` nor `nbf`".into(),
            AssertionFailure::UnknownKey => "the client assertion is not signed by a key of the client's registration".into(),
            AssertionFailure::KeysUnavailable(why) => format!("the client's keys could not be fetched: {why}").into(),
            AssertionFailure::WrongIssuer => "the client assertion's `iss` must be the client_id".into(),
            AssertionFailure::WrongSubject => "the client assertion's `sub` must be the client_id".into(),
            AssertionFailure::WrongAudience => "the client assertion's `aud` must contain the token endpoint URL or the issuer".into(),
            AssertionFailure::MissingExp => "the client assertion has no `exp`".into(),
            AssertionFailure::Expired => "the client assertion expired".into(),
            AssertionFailure::TooLongLived(max) => format!("the client assertion's `exp` is more than {max} seconds ahead").into(),
            AssertionFailure::NotYetValid => "the client assertion is not valid yet (`nbf`)".into(),
            AssertionFailure::IssuedInFuture => "the client assertion was issued in the future (`iat`)".into(),
            AssertionFailure::MissingJti => "the client assertion has no `jti`".into(),
            AssertionFailure::BadClaim(why) => format!("client assertion: {why}").into(),
            AssertionFailure::Replayed => "the client assertion was already used (replayed `jti`)".into(),
            AssertionFailure::Store(e) => format!("replay protection unavailable: {e}").into(),
        }
    }

    /// The RFC error: client authentication failures are `invalid_client` (RFC 7523 §3.2),
    /// assertion grants `invalid_grant` (§3.1); a replay is `invalid_grant` either way.
    pub fn into_oauth(self, as_grant: bool) -> OAuthError {
        let code = match &self {
            AssertionFailure::KeysUnavailable(_) | AssertionFailure::Store(_) => OAuthErrorCode::TemporarilyUnavailable,
            AssertionFailure::Replayed => OAuthErrorCode::InvalidGrant,
            _ if as_grant => OAuthErrorCode::InvalidGrant,
            _ => OAuthErrorCode::InvalidClient,
        };
        OAuthError::new(code, self.description())
    }
}

/// The assertion's subject: which client it claims to come from (read before verification, to
/// know whose keys to verify with).
pub fn subject<'a>(jws: &'a Jws<'_>) -> Result<&'a str, AssertionFailure> {
    jws.claim_str("sub").ok_or(AssertionFailure::MissingSubject)
}

/// A verified assertion.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: u64,
}

/// Checks the signature: an HMAC with the client's own plain secret (`client_secret_jwt`), or a
/// key of the client's document (by `kid`, or its only key).
async fn check_signature(jws: &Jws<'_>, client: &Client, registry: &ClientRegistry) -> Result<(), AssertionFailure> {
    if jws.is_hmac() {
        return match &client.profile.secret {
            Some(ClientSecret::Plain { value, .. }) => jws.verify_hmac(value.as_bytes()).map_err(AssertionFailure::Jws),
            _ => Err(AssertionFailure::NoSharedSecret),
        };
    }
    if client.profile.keys.is_none() {
        return Err(AssertionFailure::NoKeys);
    }
    let key = registry
        .key_for(client, jws.header_str("kid"))
        .await
        .map_err(|e| AssertionFailure::KeysUnavailable(e.reason))?
        .ok_or(AssertionFailure::UnknownKey)?;
    jws.verify(&key).map_err(AssertionFailure::Jws)
}

fn jti<'a>(jws: &'a Jws<'_>) -> Result<&'a str, AssertionFailure> {
    let jti = jws.claim_str("jti").ok_or(AssertionFailure::MissingJti)?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(AssertionFailure::BadClaim(format!("`jti` must be 1 to {MAX_JTI_LEN} characters")));
    }
    Ok(jti)
}

/// Records the `jti` of `client` until `until`; `Replayed` if it was recorded before.
async fn remember(store: &dyn Store, client: &Client, jti: &str, until: u64) -> Result<(), AssertionFailure> {
    let first_use = store
        .remember_assertion(&format!("{}\n{jti}", client.client_id), until)
        .await
        .map_err(AssertionFailure::Store)?;
    if first_use {
        Ok(())
    } else {
        Err(AssertionFailure::Replayed)
    }
}

/// Verifies `jws` as an assertion of `client` and records its `jti`.
pub async fn verify(
    jws: &Jws<'_>,
    client: &Client,
    registry: &ClientRegistry,
    store: &dyn Store,
    policy: &AssertionPolicy,
    now: u64,
) -> Result<VerifiedAssertion, AssertionFailure> {
    check_signature(jws, client, registry).await?;
    let claims = &jws.claims;
    if jws.claim_str("iss") != Some(client.client_id.as_str()) {
        return Err(AssertionFailure::WrongIssuer);
    }
    if jws.claim_str("sub") != Some(client.client_id.as_str()) {
        return Err(AssertionFailure::WrongSubject);
    }
    let audiences: Vec<&str> = policy.audiences.iter().map(String::as_str).collect();
    if !audience_contains(claims, &audiences) {
        return Err(AssertionFailure::WrongAudience);
    }
    let exp = numeric_date(claims, "exp")
        .map_err(AssertionFailure::BadClaim)?
        .ok_or(AssertionFailure::MissingExp)?;
    if exp.saturating_add(policy.leeway) <= now {
        return Err(AssertionFailure::Expired);
    }
    if exp > now + policy.max_lifetime + policy.leeway {
        return Err(AssertionFailure::TooLongLived(policy.max_lifetime));
    }
    if let Some(nbf) = numeric_date(claims, "nbf").map_err(AssertionFailure::BadClaim)? {
        if nbf > now + policy.leeway {
            return Err(AssertionFailure::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(claims, "iat").map_err(AssertionFailure::BadClaim)? {
        if iat > now + policy.leeway {
            return Err(AssertionFailure::IssuedInFuture);
        }
    }
    let jti = jti(jws)?;
    // Recorded last, so that a refused assertion does not use up its jti.
    remember(store, client, jti, exp.saturating_add(policy.leeway)).await?;
    Ok(VerifiedAssertion {
        jti: jti.to_string(),
        exp,
    })
}

/// Verifies `jws` as the OADA JWS `client_secret` of `client` exchanging `code`, and records its
/// `jti`.
pub async fn verify_code_secret(
    jws: &Jws<'_>,
    client: &Client,
    code: &str,
    registry: &ClientRegistry,
    store: &dyn Store,
    policy: &AssertionPolicy,
    now: u64,
) -> Result<(), AssertionFailure> {
    check_signature(jws, client, registry).await?;
    let claims = &jws.claims;
    if jws.claim_str("iss") != Some(client.client_id.as_str()) {
        return Err(AssertionFailure::WrongIssuer);
    }
    if !jws.claim_str("ac").is_some_and(|ac| crate::secrets::plain_matches(code, ac)) {
        return Err(AssertionFailure::WrongCode);
    }
    let audiences: Vec<&str> = policy.audiences.iter().map(String::as_str).collect();
    if !audience_contains(claims, &audiences) {
        return Err(AssertionFailure::WrongAudience);
    }
    let iat = numeric_date(claims, "iat").map_err(AssertionFailure::BadClaim)?;
    let nbf = numeric_date(claims, "nbf").map_err(AssertionFailure::BadClaim)?;
    let issued = iat.max(nbf).ok_or(AssertionFailure::MissingIssuedAt)?;
    if issued > now + policy.leeway {
        return Err(AssertionFailure::IssuedInFuture);
    }
    let until = issued.saturating_add(policy.max_lifetime).saturating_add(policy.leeway);
    if until <= now {
        return Err(AssertionFailure::Expired);
    }
    if let Some(exp) = numeric_date(claims, "exp").map_err(AssertionFailure::BadClaim)? {
        if exp.saturating_add(policy.leeway) <= now {
            return Err(AssertionFailure::Expired);
        }
    }
    let jti = jti(jws)?;
    remember(store, client, jti, until).await
}
