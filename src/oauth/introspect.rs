//! `POST /introspect` (RFC 7662). The caller authenticates as a client; it learns about its own
//! tokens (any client_id of the same partner), or about every token if the config lets it.
//! Anything else, like an invalid, expired or revoked token, is `{"active": false}`.

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
            .authenticate(request.headers, &form, request.now)
            .await?
            .ok_or_else(|| OAuthError::invalid_client("introspection requires client authentication"))?;
        let token = form.require("token")?;
        let inactive = || Reply::json(200, &json!({"active": false})).no_store();
        let Ok(claims) = self.verifier.introspect(token, request.now).await else {
            return Ok(inactive());
        };
        let may_see = caller.client.profile.introspection
            || caller.client.client_id == claims.client_id
            || match self.authn.registry().find(&claims.client_id).await {
                Ok(Some(owner)) => ClientRegistry::same_owner(&caller.client, &owner),
                _ => false,
            };
        if !may_see {
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
                "token_type": "Bearer",
            }),
        )
        .no_store())
    }
}
