//! `grant_type=authorization_code` (RFC 6749 §4.1.3): the client exchanges the code the person's
//! browser brought back.
//!
//! The code must be the client's, unexpired, unused, asked for with the same `redirect_uri`, and
//! answered with the PKCE verifier of its challenge. Everything is checked before the code is
//! used, so that a request that fails the checks cannot burn somebody else's code; using it is
//! atomic, and a second use revokes every token the first one brought (RFC 6749 §4.1.2).

use super::{user_grant_client, Issuance, PersonGrant, UserGrantContext};
use crate::oauth::client_auth::Authenticated;
use crate::oauth::error::OAuthError;
use crate::oauth::form::Form;
use crate::oauth::pkce;
use crate::oauth::user_flow::code_key;
use crate::scope::ScopeSet;
use crate::store::CodeUse;

pub const GRANT_TYPE: &str = "authorization_code";

pub async fn exchange(ctx: &UserGrantContext<'_>, form: &Form, authenticated: Option<Authenticated>, now: u64) -> Result<Issuance, OAuthError> {
    let code = form.require("code")?;
    let client = user_grant_client(ctx.authn, form, authenticated).await?;
    let key = code_key(code);
    let unavailable = |e: crate::store::StoreError| OAuthError::unavailable(e.to_string());
    let Some((grant, used)) = ctx.store.peek_code(&key).await.map_err(unavailable)? else {
        return Err(OAuthError::invalid_grant("the code is unknown or expired"));
    };
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client"));
    }
    if grant.expires_at <= now {
        return Err(OAuthError::invalid_grant("the code expired"));
    }
    match form.get("redirect_uri") {
        Some(uri) if uri != grant.redirect_uri => {
            return Err(OAuthError::invalid_grant("redirect_uri is not the one of the authorization request"))
        }
        None if grant.redirect_uri_given => {
            return Err(OAuthError::invalid_request("redirect_uri is required: the authorization request named one"))
        }
        _ => {}
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !pkce::verify(challenge, verifier) {
                return Err(OAuthError::invalid_grant("the code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)")),
        (None, Some(_)) => return Err(OAuthError::invalid_grant("the authorization request sent no code_challenge")),
        (None, None) => {
            if client.profile.public || ctx.config.require_pkce {
                return Err(OAuthError::invalid_grant("PKCE is required"));
            }
        }
    }
    if used {
        return reused(ctx, &grant.grant_id, now).await;
    }
    let grant = match ctx.store.use_code(&key).await.map_err(unavailable)? {
        CodeUse::Fresh(g) => g,
        CodeUse::Reused(g) => return reused(ctx, &g.grant_id, now).await,
        CodeUse::Unknown => return Err(OAuthError::invalid_grant("the code is unknown or expired")),
    };
    let scope = ScopeSet::parse(&grant.scope).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    let person = PersonGrant {
        user_id: grant.user_id,
        auth_time: grant.auth_time,
        grant_id: grant.grant_id,
    };
    let refresh_token = if client.profile.grant_types.refresh_token {
        Some(ctx.new_refresh_family(&client, &person, &scope, now).await?)
    } else {
        None
    };
    Ok(Issuance {
        client,
        scope,
        person: Some(person),
        refresh_token,
    })
}

/// A code used a second time: what the first use issued is revoked.
async fn reused(ctx: &UserGrantContext<'_>, grant_id: &str, now: u64) -> Result<Issuance, OAuthError> {
    tracing::warn!("an authorization code was used twice; the tokens issued from it are revoked");
    ctx.revoke_grant(grant_id, now).await?;
    Err(OAuthError::invalid_grant("the code was already used; the tokens issued from it are revoked"))
}
