//! Client authentication at the token, introspection and revocation endpoints: `private_key_jwt`
//! (RFC 7523 §2.2), `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1). One method
//! per request; every endpoint uses this one step.

use super::assertion::{self, AssertionPolicy};
use super::clients::{Client, ClientRegistry};
use super::error::OAuthError;
use super::form::Form;
use super::jws::Jws;
use crate::config::ClientSecret;
use crate::store::Store;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

pub const ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    PrivateKeyJwt,
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Client,
    pub method: Method,
}

pub struct ClientAuthenticator {
    registry: Arc<ClientRegistry>,
    store: Arc<dyn Store>,
    policy: AssertionPolicy,
    /// Argon2 verification is deliberately slow; bound how many run at once so that a flood of
    /// bad secrets cannot take every core.
    hashing: Semaphore,
}

/// `Authorization: Basic` credentials, form-urlencoded per RFC 6749 §2.3.1.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed HTTP Basic credentials").with_basic(true);
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// Compares a presented secret with an environment-configured one in constant time (hashing
/// first so that the lengths do not leak either).
fn plain_secret_matches(expected: &str, presented: &str) -> bool {
    let a = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, expected.as_bytes());
    let b = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

impl ClientAuthenticator {
    pub fn new(registry: Arc<ClientRegistry>, store: Arc<dyn Store>, policy: AssertionPolicy) -> Self {
        ClientAuthenticator {
            registry,
            store,
            policy,
            hashing: Semaphore::new(2),
        }
    }

    pub fn registry(&self) -> &ClientRegistry {
        &self.registry
    }

    pub fn policy(&self) -> &AssertionPolicy {
        &self.policy
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Authenticates the client of a request. `Ok(None)`: the request carries no client
    /// authentication at all (the caller decides whether that is acceptable).
    pub async fn authenticate(&self, headers: &HeaderMap, form: &Form, now: u64) -> Result<Option<Authenticated>, OAuthError> {
        let basic = basic_credentials(headers)?;
        let basic_used = basic.is_some();
        let assertion_type = form.get("client_assertion_type");
        let assertion = form.get("client_assertion");
        let post_secret = form.get("client_secret");
        let methods = usize::from(basic_used)
            + usize::from(assertion_type.is_some() || assertion.is_some())
            + usize::from(post_secret.is_some());
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method (RFC 6749 §2.3)",
            )
            .with_basic(basic_used));
        }
        let form_client_id = form.get("client_id");

        if let Some((id, secret)) = basic {
            if form_client_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request("client_id differs from the Basic credentials").with_basic(true));
            }
            let client = self.secret_client(&id, &secret).await.map_err(|e| e.with_basic(true))?;
            return Ok(Some(Authenticated {
                client,
                method: Method::ClientSecretBasic,
            }));
        }
        if let Some(secret) = post_secret {
            let id = form_client_id
                .ok_or_else(|| OAuthError::invalid_request("client_secret needs client_id"))?;
            let client = self.secret_client(id, secret).await?;
            return Ok(Some(Authenticated {
                client,
                method: Method::ClientSecretPost,
            }));
        }
        if assertion_type.is_some() || assertion.is_some() {
            if assertion_type != Some(ASSERTION_TYPE_JWT_BEARER) {
                return Err(OAuthError::invalid_request(format!(
                    "client_assertion_type must be {ASSERTION_TYPE_JWT_BEARER}"
                )));
            }
            let assertion = assertion.ok_or_else(|| OAuthError::invalid_request("client_assertion is required"))?;
            let client = self.assertion_client(assertion, form_client_id, false, now).await?;
            return Ok(Some(Authenticated {
                client,
                method: Method::PrivateKeyJwt,
            }));
        }
        Ok(None)
    }

    /// Verifies a JWT assertion and returns its client. `as_grant`: the assertion is a
    /// `jwt-bearer` grant rather than client authentication (only the error codes differ).
    pub async fn assertion_client(
        &self,
        assertion: &str,
        expected_client_id: Option<&str>,
        as_grant: bool,
        now: u64,
    ) -> Result<Client, OAuthError> {
        let fail = |f: assertion::AssertionFailure| f.into_oauth(as_grant);
        let jws = Jws::parse(assertion).map_err(|e| fail(assertion::AssertionFailure::Jws(e)))?;
        let sub = assertion::subject(&jws).map_err(fail)?;
        if expected_client_id.is_some_and(|id| id != sub) {
            return Err(fail(assertion::AssertionFailure::WrongSubject));
        }
        let client = self
            .registry
            .find(sub)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?
            .ok_or_else(|| fail(assertion::AssertionFailure::UnknownClient))?;
        assertion::verify(&jws, &client, &self.registry, self.store.as_ref(), &self.policy, now)
            .await
            .map_err(fail)?;
        Ok(client)
    }

    async fn secret_client(&self, client_id: &str, presented: &str) -> Result<Client, OAuthError> {
        let refused = || OAuthError::invalid_client("client authentication failed");
        let client = self
            .registry
            .find(client_id)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?
            .ok_or_else(refused)?;
        let matches = match &client.profile.secret {
            None => false,
            Some(ClientSecret::Plain { value, .. }) => plain_secret_matches(value, presented),
            Some(ClientSecret::Argon2 { phc }) => {
                let _permit = self
                    .hashing
                    .acquire()
                    .await
                    .map_err(|_| OAuthError::unavailable("shutting down"))?;
                let phc = phc.clone();
                let presented = presented.to_string();
                tokio::task::spawn_blocking(move || {
                    use argon2::password_hash::{PasswordHash, PasswordVerifier};
                    PasswordHash::new(&phc)
                        .map(|hash| argon2::Argon2::default().verify_password(presented.as_bytes(), &hash).is_ok())
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false)
            }
        };
        if matches {
            Ok(client)
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let creds = STANDARD.encode("my%20client:p%3Ass");
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {creds}")).unwrap());
        assert_eq!(basic_credentials(&h).unwrap(), Some(("my client".into(), "p:ss".into())));
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&h).is_err());
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h).unwrap(), None);
    }

    #[test]
    fn plain_secret_comparison() {
        assert!(plain_secret_matches("a-long-secret-value", "a-long-secret-value"));
        assert!(!plain_secret_matches("a-long-secret-value", "a-long-secret-valuX"));
        assert!(!plain_secret_matches("a-long-secret-value", ""));
    }
}
