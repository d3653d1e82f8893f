//! Grant handlers of the token endpoint: each turns a request into the client the token is for.
//! Adding a grant means adding a module here and a line in [`super::token`].

pub mod client_credentials;
pub mod jwt_bearer;

use super::clients::Client;
use super::error::OAuthError;
use crate::scope::ScopeSet;

/// The scope of the token: the requested scopes when all are within what the client may have,
/// everything it may have when none is requested (RFC 6749 §3.3).
pub fn resolve_scope(client: &Client, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let allowed = &client.profile.scopes;
    let Some(requested) = requested else {
        if allowed.is_empty() {
            return Err(OAuthError::invalid_scope("this client may not be granted any scope"));
        }
        return Ok(allowed.clone());
    };
    let requested = ScopeSet::parse(requested).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    if requested.is_empty() {
        return Err(OAuthError::invalid_scope("the scope parameter names no scope"));
    }
    let outside = allowed.uncovered(&requested);
    if !outside.is_empty() {
        let names: Vec<String> = outside.iter().map(|s| s.to_string()).collect();
        return Err(OAuthError::invalid_scope(format!(
            "not allowed for this client: {}",
            names.join(" ")
        )));
    }
    Ok(requested)
}
