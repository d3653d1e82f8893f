//! Client authentication at the token, introspection and revocation endpoints, one method per
//! request, the same step for every endpoint:
//! - `private_key_jwt` (RFC 7523 §2.2) with a key of the client's document, and
//!   `client_secret_jwt` (HMAC with the client's secret from the environment);
//! - `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1);
//! - OADA's JWS `client_secret` in a code exchange (seed 003), for clients with keys and no
//!   secret: a JWS whose `ac` is the code;
//! - none: a public client names itself with `client_id` (the grant then demands PKCE).

use super::assertion::{self, AssertionPolicy};
use super::clients::{Client, ClientRegistry};
use super::error::OAuthError;
use super::form::Form;
use super::jws::{Jws, HMAC_ALGORITHMS};
use crate::keys::jwk::ASSERTION_ALGORITHMS;
use crate::config::ClientSecret;
use crate::secrets::{plain_matches, Argon2Verifier};
use crate::store::Store;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use std::sync::Arc;

pub const ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    PrivateKeyJwt,
    ClientSecretJwt,
    ClientSecretBasic,
    ClientSecretPost,
    /// OADA's JWS `client_secret` bound to the code being exchanged.
    OadaCodeSecret,
    /// A public client naming itself.
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::PrivateKeyJwt => "private_key_jwt",
            Method::ClientSecretJwt => "client_secret_jwt",
            Method::ClientSecretBasic => "client_secret_basic",
            Method::ClientSecretPost => "client_secret_post",
            Method::OadaCodeSecret => "oada_jws_client_secret",
            Method::None => "none",
        }
    }
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
    argon2: Arc<Argon2Verifier>,
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

impl ClientAuthenticator {
    pub fn new(registry: Arc<ClientRegistry>, store: Arc<dyn Store>, policy: AssertionPolicy, argon2: Arc<Argon2Verifier>) -> Self {
        ClientAuthenticator {
            registry,
            store,
            policy,
            argon2,
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

    /// Authenticates the client of a request. `code` is the code of an authorization-code
    /// exchange (OADA's JWS `client_secret` is bound to it). `Ok(None)`: the request carries no
    /// client authentication at all (the caller decides whether a public client may go on).
    pub async fn authenticate(&self, headers: &HeaderMap, form: &Form, code: Option<&str>, now: u64) -> Result<Option<Authenticated>, OAuthError> {
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
            let client = self.find(id).await?.ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            if client.profile.secret.is_none() && client.profile.keys.is_some() {
                // OADA: a JWS signed by the client's key, bound to the code being exchanged
                let code = code.ok_or_else(|| {
                    OAuthError::invalid_client("a JWS client_secret is accepted only in an authorization_code exchange")
                })?;
                let jws = Jws::parse(secret)
                    .map_err(|e| assertion::AssertionFailure::Jws(e).into_oauth(false))?;
                assertion::verify_code_secret(&jws, &client, code, &self.registry, self.store.as_ref(), &self.policy, now)
                    .await
                    .map_err(|f| f.into_oauth(false))?;
                return Ok(Some(Authenticated {
                    client,
                    method: Method::OadaCodeSecret,
                }));
            }
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
            let (client, hmac) = self.assertion_client(assertion, form_client_id, false, now).await?;
            return Ok(Some(Authenticated {
                client,
                method: if hmac { Method::ClientSecretJwt } else { Method::PrivateKeyJwt },
            }));
        }
        Ok(None)
    }

    /// Resolves a client, as a token-endpoint error when that fails.
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        self.registry.find(client_id).await.map_err(|e| OAuthError::unavailable(e.to_string()))
    }

    /// Verifies a JWT assertion and returns its client, and whether it was HMAC-signed
    /// (`client_secret_jwt`). `as_grant`: the assertion is a `jwt-bearer` grant rather than client
    /// authentication (only the error codes differ; grants are never HMAC-signed).
    pub async fn assertion_client(
        &self,
        assertion: &str,
        expected_client_id: Option<&str>,
        as_grant: bool,
        now: u64,
    ) -> Result<(Client, bool), OAuthError> {
        let fail = |f: assertion::AssertionFailure| f.into_oauth(as_grant);
        let allowed: Vec<_> = if as_grant {
            ASSERTION_ALGORITHMS.to_vec()
        } else {
            ASSERTION_ALGORITHMS.iter().chain(HMAC_ALGORITHMS).copied().collect()
        };
        let jws = Jws::parse_with(assertion, &allowed).map_err(|e| fail(assertion::AssertionFailure::Jws(e)))?;
        let sub = assertion::subject(&jws).map_err(fail)?;
        if expected_client_id.is_some_and(|id| id != sub) {
            return Err(fail(assertion::AssertionFailure::WrongSubject));
        }
        let client = self
            .find(sub)
            .await?
            .ok_or_else(|| fail(assertion::AssertionFailure::UnknownClient))?;
        assertion::verify(&jws, &client, &self.registry, self.store.as_ref(), &self.policy, now)
            .await
            .map_err(fail)?;
        Ok((client, jws.is_hmac()))
    }

    async fn secret_client(&self, client_id: &str, presented: &str) -> Result<Client, OAuthError> {
        let refused = || OAuthError::invalid_client("client authentication failed");
        let client = self.find(client_id).await?.ok_or_else(refused)?;
        let matches = match &client.profile.secret {
            None => false,
            Some(ClientSecret::Plain { value, .. }) => plain_matches(value, presented),
            Some(ClientSecret::Argon2 { phc }) => self.argon2.verify(phc, presented).await,
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
}
