//! Errors of the hosted endpoints and their one mapping to HTTP: RFC 6749 §5.2 for the token,
//! introspection and revocation endpoints, RFC 7591 §3.2.2 for registration.

use crate::reply::{quoted, Reply};
use std::borrow::Cow;

/// RFC 6749 §5.2 error codes (plus the RFC 6749 §4.1.2.1 codes servers use for overload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    TemporarilyUnavailable,
    ServerError,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::ServerError => "server_error",
        }
    }
}

/// An error answer from the token, introspection or revocation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: Cow<'static, str>,
    /// The client tried HTTP Basic: a 401 must carry a matching `WWW-Authenticate` (RFC 6749 §5.2).
    pub basic_attempted: bool,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            basic_attempted: false,
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }

    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, d)
    }

    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }

    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, d)
    }

    pub fn unavailable(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::TemporarilyUnavailable, d)
    }

    pub fn with_basic(mut self, attempted: bool) -> Self {
        self.basic_attempted = attempted;
        self
    }

    pub fn status(&self) -> u16 {
        match self.code {
            OAuthErrorCode::InvalidClient => 401,
            OAuthErrorCode::TemporarilyUnavailable => 503,
            OAuthErrorCode::ServerError => 500,
            _ => 400,
        }
    }

    /// The response; `realm` is the issuer.
    pub fn reply(&self, realm: &str) -> Reply {
        let mut reply = Reply::error(self.status(), self.code.as_str(), self.description.clone()).no_store();
        if self.code == OAuthErrorCode::InvalidClient && self.basic_attempted {
            reply = reply.with_header("WWW-Authenticate", format!("Basic realm={}", quoted(realm)));
        }
        if self.code == OAuthErrorCode::TemporarilyUnavailable {
            reply = reply.with_header("Retry-After", "1");
        }
        reply
    }
}

/// RFC 7591 §3.2.2 registration error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationErrorCode {
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    TemporarilyUnavailable,
}

impl RegistrationErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            RegistrationErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            RegistrationErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
            RegistrationErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            RegistrationErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    pub code: RegistrationErrorCode,
    pub description: Cow<'static, str>,
    /// 413 instead of 400 for oversized bodies, 415 never: RFC 7591 answers 400 for bad bodies.
    pub status: u16,
}

impl RegistrationError {
    pub fn new(code: RegistrationErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        let status = if code == RegistrationErrorCode::TemporarilyUnavailable { 503 } else { 400 };
        RegistrationError {
            code,
            description: description.into(),
            status,
        }
    }

    pub fn metadata(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RegistrationErrorCode::InvalidClientMetadata, d)
    }

    pub fn statement(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RegistrationErrorCode::InvalidSoftwareStatement, d)
    }

    pub fn unapproved(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RegistrationErrorCode::UnapprovedSoftwareStatement, d)
    }

    pub fn reply(&self) -> Reply {
        Reply::error(self.status, self.code.as_str(), self.description.clone()).no_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_with_basic_challenge_only_when_basic_was_used() {
        let plain = OAuthError::invalid_client("unknown client").reply("https://as");
        assert_eq!(plain.status, 401);
        assert_eq!(plain.header("WWW-Authenticate"), None);
        let basic = OAuthError::invalid_client("bad secret").with_basic(true).reply("https://as");
        assert_eq!(basic.header("WWW-Authenticate"), Some("Basic realm=\"https://as\""));
        assert_eq!(basic.header("Cache-Control"), Some("no-store"));
    }

    #[test]
    fn other_errors_are_400() {
        for code in [
            OAuthErrorCode::InvalidRequest,
            OAuthErrorCode::InvalidGrant,
            OAuthErrorCode::InvalidScope,
            OAuthErrorCode::UnsupportedGrantType,
            OAuthErrorCode::UnauthorizedClient,
        ] {
            assert_eq!(OAuthError::new(code, "x").reply("r").status, 400);
        }
    }
}
