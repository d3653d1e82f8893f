//! `POST /token`: grant dispatch, client authentication, issuance (RFC 6749 §4.1.3, §4.4, §5,
//! §6; RFC 7523).

use super::client_auth::ClientAuthenticator;
use super::error::{OAuthError, OAuthErrorCode};
use super::form::Form;
use super::grants::{authorization_code, client_credentials, jwt_bearer, refresh_token, Issuance, UserGrantContext};
use super::HostedRequest;
use crate::auth::verifier::TokenVerifier;
use crate::config::AuthorizationConfig;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::store::Store;
use crate::token::{Person, TokenIssuer};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub struct TokenEndpoint {
    authn: Arc<ClientAuthenticator>,
    issuer: TokenIssuer,
    store: Arc<dyn Store>,
    verifier: Arc<TokenVerifier>,
    /// The user-delegated flow's settings; `None`: only the client grants.
    authorization: Option<AuthorizationConfig>,
    metrics: Arc<Metrics>,
    realm: String,
}

/// The grants the endpoint knows, and their metric labels.
fn grant_label(grant_type: &str) -> Option<&'static str> {
    match grant_type {
        client_credentials::GRANT_TYPE => Some("client_credentials"),
        jwt_bearer::GRANT_TYPE => Some("jwt_bearer"),
        authorization_code::GRANT_TYPE => Some("authorization_code"),
        refresh_token::GRANT_TYPE => Some("refresh_token"),
        _ => None,
    }
}

impl TokenEndpoint {
    pub fn new(
        authn: Arc<ClientAuthenticator>,
        issuer: TokenIssuer,
        store: Arc<dyn Store>,
        verifier: Arc<TokenVerifier>,
        authorization: Option<AuthorizationConfig>,
        metrics: Arc<Metrics>,
        realm: String,
    ) -> Self {
        TokenEndpoint {
            authn,
            issuer,
            store,
            verifier,
            authorization,
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
        let user_grant = matches!(grant_type, authorization_code::GRANT_TYPE | refresh_token::GRANT_TYPE);
        // The grant type is checked before client authentication uses up an assertion's jti.
        let label = grant_label(grant_type)
            .filter(|_| !user_grant || self.authorization.is_some())
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    format!("grant_type `{grant_type}` is not supported here"),
                )
            })?;
        let code = (grant_type == authorization_code::GRANT_TYPE).then(|| form.get("code")).flatten();
        let step = request.step("client_authentication");
        let authenticated = self
            .authn
            .authenticate(request.headers, &form, code, request.now)
            .await
            .inspect_err(|e| failed(&step, e))?;
        drop(step);
        let step = request.step("grant");
        if let Some(s) = &step {
            s.set(opentelemetry::KeyValue::new("oauth.grant_type", label));
        }
        let issuance = async { Ok::<_, OAuthError>(match grant_type {
            client_credentials::GRANT_TYPE => client_credentials::issue(authenticated, &form)?,
            jwt_bearer::GRANT_TYPE => jwt_bearer::issue(&self.authn, &form, authenticated, request.now).await?,
            _ => {
                let ctx = UserGrantContext {
                    authn: &self.authn,
                    store: self.store.as_ref(),
                    verifier: &self.verifier,
                    config: self.authorization.as_ref().expect("checked above"),
                };
                if grant_type == authorization_code::GRANT_TYPE {
                    authorization_code::exchange(&ctx, &form, authenticated, request.now).await?
                } else {
                    refresh_token::refresh(&ctx, &form, authenticated, request.now).await?
                }
            }
        })}
        .await
        .inspect_err(|e| failed(&step, e))?;
        drop(step);
        self.respond(issuance, label, request)
    }

    fn respond(&self, issuance: Issuance, label: &'static str, request: &HostedRequest<'_>) -> Result<Reply, OAuthError> {
        let now = request.now;
        let Issuance {
            client,
            scope,
            person,
            refresh_token,
        } = issuance;
        let allowed = &client.profile.grant_types;
        let permitted = match label {
            "client_credentials" => allowed.client_credentials,
            "jwt_bearer" => allowed.jwt_bearer,
            "authorization_code" => allowed.authorization_code,
            _ => allowed.refresh_token,
        };
        if !permitted {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                format!("this client may not use the {label} grant"),
            ));
        }
        // what the client may have now bounds what a grant made earlier still brings
        if !client.profile.scopes.uncovered(&scope).is_empty() {
            return Err(OAuthError::invalid_scope("the client may no longer be granted this scope"));
        }
        let person_claims = person.as_ref().map(|p| Person {
            user_id: &p.user_id,
            auth_time: p.auth_time,
            grant_id: &p.grant_id,
        });
        let step = request.step("sign_access_token");
        let issued = self
            .issuer
            .issue_for(&client.client_id, client.profile.principal.partner_claim(), person_claims.as_ref(), &scope, now)
            .map_err(|e| OAuthError::new(OAuthErrorCode::ServerError, e.to_string()))
            .inspect_err(|e| failed(&step, e))?;
        drop(step);
        self.metrics
            .tokens_issued
            .with_label_values(&[label, &client.profile.label])
            .inc();
        tracing::info!(
            client = %client.profile.label,
            client_id = %client.client_id,
            user = person.as_ref().map_or("-", |p| p.user_id.as_str()),
            grant = label,
            scope = %issued.scope,
            refresh = refresh_token.is_some(),
            "access token issued"
        );
        let mut body = Map::new();
        body.insert("access_token".into(), json!(issued.access_token));
        body.insert("token_type".into(), json!("Bearer"));
        body.insert("expires_in".into(), json!(issued.expires_in));
        body.insert("scope".into(), json!(issued.scope));
        if let Some(rt) = refresh_token {
            body.insert("refresh_token".into(), json!(rt));
        }
        Ok(Reply::json(200, &Value::Object(body)).no_store())
    }
}

/// Marks a traced step as failed with the OAuth error code (never the description, which may
/// quote what the client sent).
fn failed(step: &Option<crate::telemetry::Step>, e: &OAuthError) {
    if let Some(s) = step {
        s.fail(e.code.as_str());
    }
}
