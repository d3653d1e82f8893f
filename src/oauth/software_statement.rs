//! OADA software statements (RFC 7591 §2.3): signed registration metadata, trusted when signed
//! by a key of a configured trusted list.

use crate::keys::PublicJwkSet;
use serde_json::Value;

/// The contents of an OADA trusted list.
#[derive(Debug, Default)]
pub struct TrustedList {
    /// Key-set URLs whose keys are trusted.
    pub jkus: Vec<String>,
    /// Keys trusted directly.
    pub jwks: Option<PublicJwkSet>,
}

/// Parses an OADA trusted list: v1 is an array of jku URLs, v2 is
/// `{"version": "2", "jkus": [...], "jwks": {"keys": [...]}}`.
pub fn parse_trusted_list(value: &Value) -> Result<TrustedList, String> {
    let strings = |v: &Value, what: &str| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{what} must be an array of URLs"))?
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| format!("{what} must hold only strings")))
            .collect()
    };
    match value {
        Value::Array(_) => Ok(TrustedList {
            jkus: strings(value, "a v1 trusted list")?,
            jwks: None,
        }),
        Value::Object(obj) if obj.get("version").and_then(Value::as_str) == Some("2") => {
            let jkus = match obj.get("jkus") {
                Some(v) => strings(v, "jkus")?,
                None => Vec::new(),
            };
            let jwks = match obj.get("jwks") {
                Some(v) => Some(PublicJwkSet::from_json(v).map_err(|e| format!("jwks: {e}"))?),
                None => None,
            };
            Ok(TrustedList { jkus, jwks })
        }
        _ => Err("not an OADA trusted list: expected an array of jku URLs (v1) or an object with version \"2\"".into()),
    }
}

use super::error::{RegistrationError, RegistrationErrorCode};
use super::jws::{numeric_date, Jws};
use crate::config::{SoftwareStatementPolicy, TrustSource};
use crate::keys::remote::{validate_fetch_url, FetchError, KeyFetcher};
use crate::keys::PublicJwk;
use serde_json::Map;
use std::sync::Arc;

/// A software statement whose signature checked out.
#[derive(Debug)]
pub struct VerifiedStatement {
    pub claims: Map<String, Value>,
    /// Signed by a key of a configured trusted source (not merely by its own embedded key).
    pub trusted: bool,
}

pub struct StatementVerifier {
    policy: SoftwareStatementPolicy,
    fetcher: Arc<KeyFetcher>,
    leeway: u64,
}

fn unavailable(e: FetchError) -> RegistrationError {
    RegistrationError::new(
        RegistrationErrorCode::TemporarilyUnavailable,
        format!("a trusted key source could not be read: {e}"),
    )
}

/// URLs compare in their normalized form.
fn normalized(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| u.to_string())
}

impl StatementVerifier {
    pub fn new(policy: SoftwareStatementPolicy, fetcher: Arc<KeyFetcher>, leeway: u64) -> Self {
        StatementVerifier { policy, fetcher, leeway }
    }

    pub fn policy(&self) -> &SoftwareStatementPolicy {
        &self.policy
    }

    /// A key from a trusted source that the statement's header points at (`kid`, `jku`).
    async fn trusted_key(&self, jws: &Jws<'_>) -> Result<Option<PublicJwk>, RegistrationError> {
        let kid = jws.kid();
        let jku = jws.header_str("jku").and_then(normalized);
        for source in &self.policy.trusted {
            let found = match source {
                // a trusted set is only consulted by kid: an unlabelled statement does not get
                // verified against whichever single key happens to be configured
                TrustSource::Jwks(set) => kid.and_then(|k| set.select(Some(k))).cloned(),
                TrustSource::Jku(url) if jku.as_deref() == Some(url.as_str()) => {
                    self.fetcher.find_key(url, kid).await.map_err(unavailable)?
                }
                TrustSource::Jku(_) => None,
                TrustSource::TrustedListUrl(url) => {
                    let doc = self.fetcher.document(url).await.map_err(unavailable)?;
                    let list = parse_trusted_list(&doc).map_err(|e| {
                        unavailable(FetchError {
                            url: url.clone(),
                            reason: e,
                        })
                    })?;
                    let listed_jku = jku.as_deref().filter(|j| {
                        list.jkus.iter().any(|l| normalized(l).as_deref() == Some(*j))
                    });
                    match listed_jku {
                        Some(j) if validate_fetch_url(j).is_ok() => self.fetcher.find_key(j, kid).await.map_err(unavailable)?,
                        _ => list.jwks.as_ref().and_then(|set| kid.and_then(|k| set.select(Some(k)))).cloned(),
                    }
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Verifies `statement` at Unix time `now`.
    pub async fn verify(&self, statement: &str, now: u64) -> Result<VerifiedStatement, RegistrationError> {
        let jws = Jws::parse(statement).map_err(|e| RegistrationError::statement(format!("software_statement: {e}")))?;
        let trusted = match self.trusted_key(&jws).await? {
            Some(key) => {
                jws.verify(&key).map_err(|e| {
                    RegistrationError::statement(format!("software_statement: {e} (trusted key {})", key.kid.as_deref().unwrap_or("-")))
                })?;
                true
            }
            None if self.policy.allow_untrusted => {
                // Only its own embedded key vouches for it: valid, but untrusted.
                let embedded = jws
                    .header
                    .get("jwk")
                    .ok_or_else(|| RegistrationError::unapproved("software_statement is not signed by a trusted key"))?;
                let key = PublicJwk::from_json(embedded)
                    .map_err(|e| RegistrationError::statement(format!("software_statement header jwk: {e}")))?;
                jws.verify(&key)
                    .map_err(|e| RegistrationError::statement(format!("software_statement: {e}")))?;
                false
            }
            None => {
                return Err(RegistrationError::unapproved(
                    "software_statement is not signed by a trusted key, and untrusted statements are not accepted",
                ))
            }
        };
        let claims = jws.claims;
        let bad = |e: String| RegistrationError::statement(format!("software_statement: {e}"));
        if let Some(exp) = numeric_date(&claims, "exp").map_err(bad)? {
            if exp + self.leeway <= now {
                return Err(RegistrationError::statement("software_statement expired"));
            }
        }
        if let Some(nbf) = numeric_date(&claims, "nbf").map_err(bad)? {
            if nbf > now + self.leeway {
                return Err(RegistrationError::statement("software_statement is not valid yet"));
            }
        }
        if let Some(iat) = numeric_date(&claims, "iat").map_err(bad)? {
            if iat > now + self.leeway {
                return Err(RegistrationError::statement("software_statement was issued in the future"));
            }
        }
        Ok(VerifiedStatement { claims, trusted })
    }
}
