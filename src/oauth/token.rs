//! `POST /token`: grant dispatch, client authentication, scope, issuance (RFC 6749 §4.4, §5).

use super::client_auth::ClientAuthenticator;
use super::error::{OAuthError, OAuthErrorCode};
use super::form::Form;
use super::grants::{self, client_credentials, jwt_bearer};
use super::HostedRequest;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::token::TokenIssuer;
use serde_json::json;
use std::sync::Arc;

pub struct TokenEndpoint {
    authn: Arc<ClientAuthenticator>,
    issuer: TokenIssuer,
    metrics: Arc<Metrics>,
    realm: String,
}

impl TokenEndpoint {
    pub fn new(authn: Arc<ClientAuthenticator>, issuer: TokenIssuer, metrics: Arc<Metrics>, realm: String) -> Self {
        TokenEndpoint {
            authn,
            issuer,
            metrics,
            realm,
        }
    }

    pub async fn token(&self, request: &HostedRequest<'_>) -> Reply {
        match self.issue(request).await {
            Ok(reply) => reply,
            Err(e) => {
                self.metrics
                    .token_errors
                    .with_label_values(&[e.code.as_str()])
                    .inc();
                tracing::info!(error = e.code.as_str(), reason = %e.description, "token request refused");
                e.reply(&self.realm)
            }
        }
    }

    async fn issue(&self, request: &HostedRequest<'_>) -> Result<Reply, OAuthError> {
        let form = Form::parse(request.headers, &request.body)?;
        let grant_type = form.require("grant_type")?;
        // The grant type is checked before client authentication uses up an assertion's jti.
        if grant_type != client_credentials::GRANT_TYPE && grant_type != jwt_bearer::GRANT_TYPE {
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                format!("grant_type `{grant_type}` is not supported; use client_credentials or {}", jwt_bearer::GRANT_TYPE),
            ));
        }
        let authenticated = self.authn.authenticate(request.headers, &form, request.now).await?;
        let (client, grant_label) = if grant_type == client_credentials::GRANT_TYPE {
            (client_credentials::client(authenticated)?, "client_credentials")
        } else {
            (jwt_bearer::client(&self.authn, &form, authenticated, request.now).await?, "jwt_bearer")
        };
        let scope = grants::resolve_scope(&client, form.get("scope"))?;
        let issued = self
            .issuer
            .issue(&client.client_id, &scope, request.now)
            .map_err(|e| OAuthError::new(OAuthErrorCode::ServerError, e.to_string()))?;
        self.metrics
            .tokens_issued
            .with_label_values(&[grant_label, &client.profile.label])
            .inc();
        tracing::info!(client = %client.profile.label, client_id = %client.client_id, grant = grant_label, scope = %issued.scope, "access token issued");
        Ok(Reply::json(
            200,
            &json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            }),
        )
        .no_store())
    }
}
