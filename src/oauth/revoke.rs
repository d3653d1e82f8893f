//! `POST /revoke` (RFC 7009). The caller authenticates (a public client names itself); a valid
//! token it owns is revoked: an access token is refused by the proxy from the next request on,
//! cache included; a refresh token ends its whole grant (its refresh-token family and the access
//! tokens issued from it). The answer is 200 for every well-formed request, whether or not
//! anything was revoked (§2.2), so it reveals nothing.

use super::client_auth::ClientAuthenticator;
use super::clients::ClientRegistry;
use super::error::OAuthError;
use super::form::Form;
use super::HostedRequest;
use crate::auth::verifier::TokenVerifier;
use crate::metrics::Metrics;
use crate::reply::Reply;
use std::sync::Arc;

pub struct Revocation {
    authn: Arc<ClientAuthenticator>,
    verifier: Arc<TokenVerifier>,
    metrics: Arc<Metrics>,
    realm: String,
}

impl Revocation {
    pub fn new(authn: Arc<ClientAuthenticator>, verifier: Arc<TokenVerifier>, metrics: Arc<Metrics>, realm: String) -> Self {
        Revocation {
            authn,
            verifier,
            metrics,
            realm,
        }
    }

    pub async fn revoke(&self, request: &HostedRequest<'_>) -> Reply {
        self.answer(request).await.unwrap_or_else(|e| e.reply(&self.realm))
    }

    async fn answer(&self, request: &HostedRequest<'_>) -> Result<Reply, OAuthError> {
        let form = Form::parse(request.headers, &request.body)?;
        let authenticated = self.authn.authenticate(request.headers, &form, None, request.now).await?;
        let caller = super::grants::user_grant_client(&self.authn, &form, authenticated).await?;
        let token = form.require("token")?;
        let done = || Reply::empty(200).no_store();
        let refresh = match crate::store::RefreshKey::of(token) {
            Some(key) => self
                .authn
                .store()
                .refresh_family(&key)
                .await
                .map_err(|e| OAuthError::unavailable(e.to_string()))?,
            None => None,
        };
        if let Some((family, _)) = refresh {
            let owns = caller.client_id == family.client_id;
            if owns && !family.revoked {
                let until = request.now + self.verifier.max_token_lifetime();
                self.verifier
                    .revoke_grant(&family.id, until)
                    .await
                    .map_err(|e| OAuthError::unavailable(e.to_string()))?;
                self.authn
                    .store()
                    .revoke_refresh_family(&family.id)
                    .await
                    .map_err(|e| OAuthError::unavailable(e.to_string()))?;
                self.metrics.revocations.inc();
                tracing::info!(client_id = %family.client_id, "refresh token revoked with its grant");
            }
            return Ok(done());
        }
        // Invalid, expired or already revoked tokens: nothing to do (RFC 7009 §2.2).
        let Ok(claims) = self.verifier.introspect(token, request.now).await else {
            return Ok(done());
        };
        let owns = caller.client_id == claims.client_id
            || match self.authn.registry().find(&claims.client_id).await {
                Ok(Some(owner)) => ClientRegistry::same_owner(&caller, &owner),
                _ => false,
            };
        if !owns {
            tracing::warn!(caller = %caller.client_id, "revocation of another client's token ignored");
            return Ok(done());
        }
        self.verifier
            .revoke(token, &claims.jti, claims.exp)
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        self.metrics.revocations.inc();
        tracing::info!(client_id = %claims.client_id, jti = %claims.jti, "access token revoked");
        Ok(done())
    }
}
