//! Access control on proxied requests: find the bearer token, verify it (from the cache when
//! possible), check the route's OADA scopes, and say why when the answer is no (RFC 6750).

pub mod bearer;
pub mod verifier;

use crate::reply::{quoted, Reply};
use crate::routes::ScopeRequirement;
use crate::issuers::IssuerUnavailable;
use bearer::BearerError;
use http::{HeaderMap, Method};
use verifier::{TokenRejection, TokenVerifier, Verified, VerifyError};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    MissingToken,
    InvalidRequest(&'static str),
    InvalidToken(TokenRejection),
    InsufficientScope { needed: String },
    /// The revocation list or the token's issuer could not be consulted; the reason.
    Unavailable(&'static str),
}

impl Denial {
    /// `result` label of `oada_gateway_auth_decisions_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidRequest(_) => "invalid_request",
            Denial::InvalidToken(TokenRejection::Expired) => "expired_token",
            Denial::InvalidToken(TokenRejection::Revoked) => "revoked_token",
            Denial::InvalidToken(_) => "invalid_token",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::Unavailable(_) => "unavailable",
        }
    }

    /// The RFC 6750 §3 response; `realm` is the issuer.
    pub fn reply(&self, realm: &str) -> Reply {
        let challenge = |error: &str, description: &str| {
            format!(
                "Bearer realm={}, error={}, error_description={}",
                quoted(realm),
                quoted(error),
                quoted(description)
            )
        };
        match self {
            Denial::MissingToken => Reply::error(401, "invalid_request", "an access token is required: send Authorization: Bearer <token>")
                .with_header("WWW-Authenticate", format!("Bearer realm={}", quoted(realm))),
            Denial::InvalidRequest(why) => Reply::error(400, "invalid_request", *why)
                .with_header("WWW-Authenticate", challenge("invalid_request", why)),
            Denial::InvalidToken(why) => Reply::error(401, "invalid_token", why.description())
                .with_header("WWW-Authenticate", challenge("invalid_token", why.description())),
            Denial::InsufficientScope { needed } => {
                let description = format!("the access token lacks the scope {needed}");
                Reply::error(403, "insufficient_scope", description.clone()).with_header(
                    "WWW-Authenticate",
                    format!("{}, scope={}", challenge("insufficient_scope", &description), quoted(needed)),
                )
            }
            Denial::Unavailable(why) => Reply::error(503, "temporarily_unavailable", *why).with_header("Retry-After", "1"),
        }
    }
}

/// Checks bearer tokens against route requirements.
pub struct Authorizer {
    verifier: std::sync::Arc<TokenVerifier>,
    allow_query_token: bool,
}

impl Authorizer {
    pub fn new(verifier: std::sync::Arc<TokenVerifier>, allow_query_token: bool) -> Self {
        Authorizer {
            verifier,
            allow_query_token,
        }
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn allows_query_token(&self) -> bool {
        self.allow_query_token
    }

    /// Authorizes a request for a route requiring `requirement`, at Unix time `now`.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        method: &Method,
        requirement: &ScopeRequirement,
        issuers: Option<&[Box<str>]>,
        now: u64,
    ) -> Result<Verified, Denial> {
        let token = bearer::extract(headers, query, self.allow_query_token).map_err(|e| match e {
            BearerError::Missing => Denial::MissingToken,
            BearerError::InvalidRequest(why) => Denial::InvalidRequest(why),
        })?;
        let verified = self.verifier.verify(&token, now).await.map_err(|e| match e {
            VerifyError::Rejected(why) => Denial::InvalidToken(why),
            VerifyError::Store(_) => Denial::Unavailable("token revocation status could not be checked; retry shortly"),
            VerifyError::Issuer(IssuerUnavailable::NoKeys) => {
                Denial::Unavailable("the keys of the token's issuer are not available; retry shortly")
            }
            VerifyError::Issuer(IssuerUnavailable::Introspection) => {
                Denial::Unavailable("the token's issuer cannot be asked about it now; retry shortly")
            }
        })?;
        if let Some(accepted) = issuers {
            let issuer = verified.token.grant.issuer.as_deref().unwrap_or(self.verifier.issuer());
            if !accepted.iter().any(|a| **a == *issuer) {
                return Err(Denial::InvalidToken(TokenRejection::IssuerNotAccepted));
            }
        }
        if !requirement.is_met_by(&verified.token.grant.scopes, method) {
            return Err(Denial::InsufficientScope {
                needed: requirement.describe(method),
            });
        }
        Ok(verified)
    }
}
