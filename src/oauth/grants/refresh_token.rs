//! `grant_type=refresh_token` (RFC 6749 §6): a refresh token for a new access token and a new
//! refresh token. Each refresh token is used once: the family (all refresh tokens of one grant)
//! only accepts its newest, and a replaced one coming back means it was stolen, so the whole
//! family and its access tokens are revoked (RFC 9700 §4.14.2). A requested `scope` may narrow,
//! never widen, the grant.

use super::{resolve_scope, user_grant_client, Issuance, PersonGrant, UserGrantContext};
use crate::oauth::client_auth::Authenticated;
use crate::oauth::error::OAuthError;
use crate::oauth::form::Form;
use crate::scope::ScopeSet;
use crate::store::{RefreshKey, RefreshUse};

pub const GRANT_TYPE: &str = "refresh_token";

pub async fn refresh(ctx: &UserGrantContext<'_>, form: &Form, authenticated: Option<Authenticated>, now: u64) -> Result<Issuance, OAuthError> {
    let presented = form.require("refresh_token")?;
    let client = user_grant_client(ctx.authn, form, authenticated).await?;
    if !client.profile.grant_types.refresh_token {
        return Err(OAuthError::new(
            crate::oauth::error::OAuthErrorCode::UnauthorizedClient,
            "this client may not use refresh tokens",
        ));
    }
    let unavailable = |e: crate::store::StoreError| OAuthError::unavailable(e.to_string());
    let Some(key) = RefreshKey::of(presented) else {
        return Err(OAuthError::invalid_grant("the refresh token is unknown, expired or revoked"));
    };
    match ctx.store.refresh_family(&key).await.map_err(unavailable)? {
        Some((family, _)) if family.client_id != client.client_id => {
            return Err(OAuthError::invalid_grant("the refresh token was issued to another client"))
        }
        Some(_) => {}
        None => return Err(OAuthError::invalid_grant("the refresh token is unknown, expired or revoked")),
    }
    let (new_token, new_key) = RefreshKey::new_token(&key.family);
    let family = match ctx.store.rotate_refresh(&key, &new_key, now).await.map_err(unavailable)? {
        RefreshUse::Rotated(family) => family,
        RefreshUse::Reused(family) => {
            tracing::warn!(client_id = %family.client_id, "a replaced refresh token was used again; its family is revoked");
            ctx.revoke_grant(&family.id, now).await?;
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; every token of its grant is revoked",
            ));
        }
        RefreshUse::Unknown => return Err(OAuthError::invalid_grant("the refresh token is unknown, expired or revoked")),
    };
    let granted = ScopeSet::parse(&family.scope).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    let scope = resolve_scope(&granted, form.get("scope"))?;
    Ok(Issuance {
        client,
        scope,
        person: Some(PersonGrant {
            user_id: family.user_id,
            auth_time: family.auth_time,
            grant_id: family.id,
        }),
        refresh_token: Some(new_token),
    })
}
