//! `grant_type=client_credentials` (RFC 6749 §4.4): the authenticated client asks for itself.

use crate::oauth::client_auth::Authenticated;
use crate::oauth::clients::Client;
use crate::oauth::error::OAuthError;

pub const GRANT_TYPE: &str = "client_credentials";

pub fn client(authenticated: Option<Authenticated>) -> Result<Client, OAuthError> {
    authenticated
        .map(|a| a.client)
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required for client_credentials (use private_key_jwt)"))
}
