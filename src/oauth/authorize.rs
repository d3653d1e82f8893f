//! `GET /authorization` (RFC 6749 §4.1.1, OADA): the start of the user-delegated flow.
//!
//! Until the client and its redirect URI are validated, every error is a page for the person and
//! never a redirect (so the endpoint cannot be used to send browsers anywhere). From then on,
//! errors go back to the client's redirect URI with `error` and `state` (§4.1.2.1). A valid
//! request is kept as pending, bound to the browser's session, and the person signs in (or, when
//! signed in already, sees the consent page).

use super::pkce;
use super::user_flow::{UserFlow, PENDING_LIFETIME};
use super::HostedRequest;
use crate::ids::random_id;
use crate::reply::Reply;
use crate::scope::ScopeSet;
use crate::store::PendingAuthorization;
use std::collections::HashMap;

/// Longest `state` accepted (it comes back in a URL).
const MAX_STATE_LEN: usize = 512;

/// The query's parameters; a repeated one is an error (RFC 6749 §3.1).
fn parameters(query: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if params.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(format!("the parameter `{name}` is repeated"));
        }
    }
    Ok(params)
}

pub async fn authorize(flow: &UserFlow, request: &HostedRequest<'_>) -> Reply {
    let params = match parameters(request.query) {
        Ok(p) => p,
        Err(why) => return flow.page_error(400, "invalid_request", "This sign-in link is broken", &why),
    };
    let param = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = param("client_id") else {
        return flow.page_error(
            400,
            "invalid_request",
            "This sign-in link is broken",
            "It does not say which application is asking (client_id is missing).",
        );
    };
    if let Some((provider, false)) = flow.registry.discovery().and_then(|d| d.provider_of(client_id)) {
        // never contacted: the person is told why
        return flow.page_error(
            400,
            "untrusted_client",
            "This application cannot be trusted",
            &format!("It says it is registered with {provider}, which is not a client discovery provider this service trusts."),
        );
    }
    let client = match flow.registry.find(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return flow.page_error(
                400,
                "unknown_client",
                "Unknown application",
                "The application that sent you here is not known to this service.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "a client could not be resolved");
            return flow
                .page_error(
                    503,
                    "temporarily_unavailable",
                    "Please try again shortly",
                    "The application's registration could not be checked right now.",
                )
                .with_header("Retry-After", "5");
        }
    };
    let profile = &client.profile;
    if !profile.grant_types.authorization_code || profile.redirect_uris.is_empty() {
        return flow.page_error(
            400,
            "unauthorized_client",
            "This application cannot ask you for access",
            "It is not registered for the authorization code flow.",
        );
    }
    // exact string comparison: no prefix, wildcard or normalization
    let (redirect_uri, given) = match param("redirect_uri") {
        Some(uri) if profile.redirect_uris.iter().any(|r| r == uri) => (uri.to_string(), true),
        Some(_) => {
            return flow.page_error(
                400,
                "bad_redirect_uri",
                "This sign-in link is not the application's",
                "The address it would send you back to is not one the application registered.",
            )
        }
        None if profile.redirect_uris.len() == 1 => (profile.redirect_uris[0].clone(), false),
        None => {
            return flow.page_error(
                400,
                "bad_redirect_uri",
                "This sign-in link is broken",
                "It does not say where to send you back to (redirect_uri is missing).",
            )
        }
    };
    let state = param("state").map(str::to_string);
    // from here on the client is told (RFC 6749 §4.1.2.1)
    let mut pending = PendingAuthorization {
        client_id: client_id.to_string(),
        redirect_uri,
        redirect_uri_given: given,
        scope: String::new(),
        state: state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
        code_challenge: None,
        session: String::new(),
        csrf: random_id(16),
        expires_at: request.now + PENDING_LIFETIME,
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return flow.error_to_client(&pending, "invalid_request", "invalid_request", "state is too long");
    }
    match param("response_type") {
        Some("code") => {}
        None => return flow.error_to_client(&pending, "invalid_request", "invalid_request", "response_type is required"),
        Some(_) => {
            return flow.error_to_client(
                &pending,
                "unsupported_response_type",
                "unsupported_response_type",
                "only response_type=code is supported (no implicit or hybrid flows)",
            )
        }
    }
    match (param("code_challenge_method"), param("code_challenge")) {
        (Some("plain"), _) => {
            return flow.error_to_client(&pending, "invalid_request", "invalid_request", "code_challenge_method plain is not allowed; use S256")
        }
        (Some(m), _) if m != "S256" => {
            return flow.error_to_client(&pending, "invalid_request", "invalid_request", "code_challenge_method must be S256")
        }
        (Some(_), None) => {
            return flow.error_to_client(&pending, "invalid_request", "invalid_request", "code_challenge_method without code_challenge")
        }
        (method, Some(challenge)) => {
            if method.is_none() {
                // RFC 7636 §4.3 would read a missing method as plain, which is refused
                return flow.error_to_client(&pending, "invalid_request", "invalid_request", "code_challenge_method=S256 is required with code_challenge");
            }
            if !pkce::is_valid_challenge(challenge) {
                return flow.error_to_client(&pending, "invalid_request", "invalid_request", "code_challenge must be 43 base64url characters");
            }
            pending.code_challenge = Some(challenge.to_string());
        }
        (None, None) => {
            if flow.config.require_pkce || profile.public {
                return flow.error_to_client(
                    &pending,
                    "invalid_request",
                    "invalid_request",
                    "PKCE is required: send code_challenge and code_challenge_method=S256",
                );
            }
        }
    }
    let scope = match param("scope") {
        None => profile.scopes.clone(),
        Some(text) => match ScopeSet::parse(text) {
            Ok(s) if !s.is_empty() => s,
            _ => return flow.error_to_client(&pending, "invalid_scope", "invalid_scope", "the scope is not a list of OADA scopes"),
        },
    };
    if scope.is_empty() || !profile.scopes.uncovered(&scope).is_empty() {
        return flow.error_to_client(&pending, "invalid_scope", "invalid_scope", "the application may not ask for this scope");
    }
    pending.scope = scope.to_string();

    // bind the request to the browser's session (a new, anonymous one if it has none)
    let (session_key, session, set_cookie) = match flow.session(request.headers, request.now).await {
        Ok(Some((key, s))) => (key, Some(s), None),
        Ok(None) => match flow.new_session(None, request.now).await {
            Ok((key, cookie)) => (key, None, Some(cookie)),
            Err(e) => return flow.unavailable(&e),
        },
        Err(e) => return flow.unavailable(&e),
    };
    pending.session = session_key;
    let request_id = random_id(16);
    if let Err(e) = flow.store.put_pending(&request_id, &pending).await {
        return flow.unavailable(&e);
    }
    let signed_in = session.as_ref().and_then(|s| Some((flow.user_of(s)?, s.auth_time?)));
    let reply = match signed_in {
        Some((user, auth_time)) => match flow.consent_or_code(&request_id, &pending, &user, auth_time, request.now).await {
            Ok(r) => r,
            Err(e) => return flow.unavailable(&e),
        },
        None => flow.pages.login(
            &flow.url(super::paths::LOGIN),
            &request_id,
            &pending.csrf,
            &profile.display.name,
            "",
            None,
            200,
            super::pages::origin_of(&pending.redirect_uri).as_deref(),
        ),
    };
    match set_cookie {
        Some(cookie) => reply.with_header("Set-Cookie", cookie),
        None => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parameters(Some("a=1&b=2")).is_ok());
        assert!(parameters(Some("a=1&a=2")).is_err());
        assert!(parameters(None).unwrap().is_empty());
    }
}
