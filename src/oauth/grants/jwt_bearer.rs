//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1, the OADA use case's
//! "jwt_bearer"): the signed JWT itself is the grant, issued by the client for itself.

use super::{resolve_scope, Issuance};
use crate::oauth::client_auth::{Authenticated, ClientAuthenticator};
use crate::oauth::error::OAuthError;
use crate::oauth::form::Form;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub async fn issue(
    authn: &ClientAuthenticator,
    form: &Form,
    authenticated: Option<Authenticated>,
    now: u64,
) -> Result<Issuance, OAuthError> {
    let assertion = form.require("assertion")?;
    let (client, _) = authn.assertion_client(assertion, None, true, now).await?;
    // Client authentication is optional with this grant; when present it must be the same party.
    if let Some(a) = authenticated {
        if a.client.client_id != client.client_id {
            return Err(OAuthError::invalid_grant("the assertion was issued by another client than the one authenticated"));
        }
    }
    let scope = resolve_scope(&client.profile.scopes, form.get("scope"))?;
    Ok(Issuance {
        client,
        scope,
        person: None,
        refresh_token: None,
    })
}
