//! The gateway's access tokens: JWTs in the RFC 9068 shape, signed by the first key of the key
//! ring. The token endpoint issues them; the proxy ([`crate::auth`]) verifies them.

use crate::ids::random_id;
use crate::keys::KeyRing;
use crate::scope::ScopeSet;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// `typ` header of access tokens (RFC 9068 §2.1); checked on verification so that no other JWT
/// signed by the gateway's keys can pass as an access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an access token (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The person the token is for, or (client credentials) the client itself.
    pub sub: String,
    pub client_id: String,
    pub aud: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// When the person signed in; present exactly on tokens issued for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// The grant (code or refresh-token family) the token was issued from; revoking the grant
    /// revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The configured partner the client belongs to (removing the partner refuses the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// The software a client registered with a software statement is (RFC 7591 `software_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
}

/// Who a token's client belongs to, as the token says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerClaim<'a> {
    /// A partner configured in `gateway.yaml`, by name.
    Configured(&'a str),
    /// A client registered with a software statement, by its `software_id`.
    Software(&'a str),
}

/// Who a token is for, beside its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<'a> {
    pub user_id: &'a str,
    pub auth_time: u64,
    pub grant_id: &'a str,
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
#[error("signing the access token failed: {0}")]
pub struct SigningError(String);

/// Signs access tokens.
pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl TokenIssuer {
    pub fn new(keys: Arc<KeyRing>, issuer: &str, audience: &str, lifetime: Duration) -> Self {
        TokenIssuer {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Issues a token for `client_id` itself with `scope`, valid from `now` (Unix seconds).
    pub fn issue(&self, client_id: &str, scope: &ScopeSet, now: u64) -> Result<IssuedToken, SigningError> {
        self.issue_for(client_id, None, None, scope, now)
    }

    /// Issues a token for `client_id` (of `partner`), for `person` when given, with `scope`.
    pub fn issue_for(
        &self,
        client_id: &str,
        partner: Option<PartnerClaim<'_>>,
        person: Option<&Person<'_>>,
        scope: &ScopeSet,
        now: u64,
    ) -> Result<IssuedToken, SigningError> {
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: person.map_or(client_id, |p| p.user_id).to_string(),
            client_id: client_id.to_string(),
            aud: self.audience.clone(),
            scope: scope.to_string(),
            iat: now,
            exp: now + self.lifetime.as_secs(),
            jti: random_id(16),
            auth_time: person.map(|p| p.auth_time),
            grant_id: person.map(|p| p.grant_id.to_string()),
            partner: match partner {
                Some(PartnerClaim::Configured(name)) => Some(name.to_string()),
                _ => None,
            },
            software_id: match partner {
                Some(PartnerClaim::Software(id)) => Some(id.to_string()),
                _ => None,
            },
        };
        let token = self.sign(&claims)?;
        Ok(IssuedToken {
            access_token: token,
            expires_in: self.lifetime.as_secs(),
            scope: claims.scope,
            jti: claims.jti,
        })
    }

    /// Signs arbitrary access-token claims with the current signing key.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, SigningError> {
        let key = self.keys.signer();
        let mut header = Header::new(key.alg);
        header.typ = Some(ACCESS_TOKEN_TYP.to_string());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| SigningError(e.to_string()))
    }
}
