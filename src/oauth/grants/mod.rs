//! Grant handlers of the token endpoint: each turns a request into what the token is issued for
//! ([`Issuance`]). Adding a grant means adding a module here and a line in [`super::token`].

pub mod authorization_code;
pub mod client_credentials;
pub mod jwt_bearer;
pub mod refresh_token;

use super::clients::Client;
use super::error::OAuthError;
use crate::scope::ScopeSet;

/// The person a token is issued for, in a user-delegated grant.
#[derive(Debug, Clone)]
pub struct PersonGrant {
    pub user_id: String,
    pub auth_time: u64,
    /// The code's (and its refresh-token family's) grant id.
    pub grant_id: String,
}

/// What a grant decided: the token's client, scope and person, and a refresh token to hand out.
#[derive(Debug)]
pub struct Issuance {
    pub client: Client,
    pub scope: ScopeSet,
    pub person: Option<PersonGrant>,
    pub refresh_token: Option<String>,
}

/// The scope of the token: the requested scopes when all are within what the client may have,
/// everything it may have when none is requested (RFC 6749 §3.3).
pub fn resolve_scope(allowed: &ScopeSet, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
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

/// What the user-delegated grants need beyond the request.
pub struct UserGrantContext<'a> {
    pub authn: &'a super::client_auth::ClientAuthenticator,
    pub store: &'a dyn crate::store::Store,
    pub verifier: &'a crate::auth::verifier::TokenVerifier,
    pub config: &'a crate::config::AuthorizationConfig,
}

impl UserGrantContext<'_> {
    /// Revokes everything issued from grant `grant_id` (its access tokens and refresh tokens).
    pub async fn revoke_grant(&self, grant_id: &str, now: u64) -> Result<(), OAuthError> {
        let until = now + self.verifier.max_token_lifetime();
        self.verifier
            .revoke_grant(grant_id, until)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        self.store
            .revoke_refresh_family(grant_id)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))
    }

    /// Starts a refresh-token family for a grant and returns its first token.
    pub async fn new_refresh_family(
        &self,
        client: &Client,
        person: &PersonGrant,
        scope: &ScopeSet,
        now: u64,
    ) -> Result<String, OAuthError> {
        let (token, key) = crate::store::RefreshKey::new_token(&person.grant_id);
        let family = crate::store::RefreshFamily {
            id: person.grant_id.clone(),
            client_id: client.client_id.clone(),
            user_id: person.user_id.clone(),
            scope: scope.to_string(),
            auth_time: person.auth_time,
            expires_at: now + self.config.refresh_token_lifetime.as_secs(),
            idle_lifetime: self.config.refresh_token_idle_lifetime.as_secs(),
            last_used: now,
            current: 0,
            revoked: false,
        };
        self.store
            .put_refresh_family(&family, &key)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        Ok(token)
    }
}


/// The client of a user-delegated grant: the authenticated one, or a public client naming itself
/// with `client_id` (which then has no other proof than PKCE or its refresh token).
pub async fn user_grant_client(
    authn: &super::client_auth::ClientAuthenticator,
    form: &super::form::Form,
    authenticated: Option<super::client_auth::Authenticated>,
) -> Result<Client, OAuthError> {
    let client = match authenticated {
        Some(a) => a.client,
        None => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client authentication is required (or client_id for a public client)"))?;
            let client = authn
                .find(id)
                .await?
                .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
            if !client.profile.public {
                return Err(OAuthError::invalid_client("this client must authenticate"));
            }
            client
        }
    };
    if form.get("client_id").is_some_and(|id| id != client.client_id) {
        return Err(OAuthError::invalid_request("client_id is not the authenticated client"));
    }
    Ok(client)
}
