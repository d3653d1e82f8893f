//! `POST /introspect` (RFC 7662). The caller authenticates as a client; it learns about its own
//! tokens (any client_id of the same partner), or about every token if the config lets it: access
//! tokens and refresh tokens (`token_type_hint` orders the lookups). Anything else, like an
//! invalid, expired, replaced or revoked token, is `{"active": false}`.

use super::client_auth::ClientAuthenticator;
use super::clients::ClientRegistry;
use super::error::OAuthError;
use super::form::Form;
use super::HostedRequest;
use crate::auth::verifier::TokenVerifier;
use crate::reply::Reply;
use serde_json::json;
use std::sync::Arc;

pub struct Introspection {
    authn: Arc<ClientAuthenticator>,
    verifier: Arc<TokenVerifier>,
    realm: String,
}

impl Introspection {
    pub fn new(authn: Arc<ClientAuthenticator>, verifier: Arc<TokenVerifier>, realm: String) -> Self {
        Introspection { authn, verifier, realm }
    }

    pub async fn introspect(&self, request: &HostedRequest<'_>) -> Reply {
        self.answer(request).await.unwrap_or_else(|e| e.reply(&self.realm))
    }

    async fn answer(&self, request: &HostedRequest<'_>) -> Result<Reply, OAuthError> {
        let form = Form::parse(request.headers, &request.body)?;
        let caller = self
            .authn
            .authenticate(request.headers, &form, None, request.now)
            .await?
            .ok_or_else(|| OAuthError::invalid_client("introspection requires client authentication"))?;
        let token = form.require("token")?;
        let inactive = || Reply::json(200, &json!({"active": false})).no_store();
        let refresh_first = form.get("token_type_hint") == Some("refresh_token");
        if refresh_first {
            if let Some(reply) = self.refresh_token(&caller.client, token, request.now).await? {
                return Ok(reply);
            }
        }
        let Ok(claims) = self.verifier.introspect(token, request.now).await else {
            if !refresh_first {
                if let Some(reply) = self.refresh_token(&caller.client, token, request.now).await? {
                    return Ok(reply);
                }
            }
            return Ok(inactive());
        };
        if !self.may_see(&caller.client, &claims.client_id).await {
            return Ok(inactive());
        }
        Ok(Reply::json(
            200,
            &json!({
                "active": true,
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
                "auth_time": claims.auth_time,
                "token_type": "Bearer",
            }),
        )
        .no_store())
    }

    async fn may_see(&self, caller: &crate::oauth::clients::Client, owner_id: &str) -> bool {
        caller.profile.introspection
            || caller.client_id == owner_id
            || match self.authn.registry().find(owner_id).await {
                Ok(Some(owner)) => ClientRegistry::same_owner(caller, &owner),
                _ => false,
            }
    }

    /// The answer about a live, newest refresh token the caller may see, if `token` is one.
    async fn refresh_token(&self, caller: &crate::oauth::clients::Client, token: &str, now: u64) -> Result<Option<Reply>, OAuthError> {
        let Some(key) = crate::store::RefreshKey::of(token) else {
            return Ok(None);
        };
        let family = self
            .authn
            .store()
            .refresh_family(&key)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        let Some((family, true)) = family else {
            return Ok(None);
        };
        if !family.is_live(now) || !self.may_see(caller, &family.client_id).await {
            return Ok(None);
        }
        Ok(Some(
            Reply::json(
                200,
                &json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": family.scope,
                    "client_id": family.client_id,
                    "sub": family.user_id,
                    "auth_time": family.auth_time,
                    "exp": family.expires_at.min(family.last_used + family.idle_lifetime),
                }),
            )
            .no_store(),
        ))
    }
}
