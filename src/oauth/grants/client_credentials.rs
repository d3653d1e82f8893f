//! `grant_type=client_credentials` (RFC 6749 §4.4): the authenticated client asks for itself.

use super::{resolve_scope, Issuance};
use crate::oauth::client_auth::{Authenticated, Method};
use crate::oauth::error::OAuthError;
use crate::oauth::form::Form;

pub const GRANT_TYPE: &str = "client_credentials";

pub fn issue(authenticated: Option<Authenticated>, form: &Form) -> Result<Issuance, OAuthError> {
    let client = authenticated
        .filter(|a| a.method != Method::OadaCodeSecret)
        .map(|a| a.client)
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required for client_credentials (use private_key_jwt)"))?;
    let scope = resolve_scope(&client.profile.scopes, form.get("scope"))?;
    Ok(Issuance {
        client,
        scope,
        person: None,
        refresh_token: None,
    })
}
