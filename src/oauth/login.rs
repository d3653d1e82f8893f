//! `/login`: the sign-in form of a pending authorization request (`GET`) and its submission
//! (`POST`, fields `username`, `password`, `request`, `csrf`).
//!
//! Password guessing is slowed down per username and per client address: after
//! `authorization.login.max_failures_*` failures within the window, the next attempt must wait
//! 5 seconds, each further one twice as long as the one before (up to `max_delay`), and is refused
//! with 429 until then. The
//! password check takes as long for unknown usernames as for known ones, with the gateway's bounded
//! Argon2 work. Signing in replaces the browser's session (and cookie).

use super::browser::csrf_matches;
use super::form::Form;
use super::pages::origin_of;
use super::user_flow::UserFlow;
use super::HostedRequest;
use crate::reply::Reply;
use crate::store::{LoginFailures, PendingAuthorization, StoreError};
use std::time::Duration;

/// The first wait once the allowed failures are used up.
const FIRST_DELAY_SECS: u64 = 5;

/// How long `failures` make the next attempt wait, from the last failure.
fn delay(failures: &LoginFailures, allowed: u32, max: Duration) -> Duration {
    if failures.count < allowed {
        return Duration::ZERO;
    }
    let doublings = (failures.count - allowed).min(20);
    Duration::from_secs(FIRST_DELAY_SECS << doublings).min(max)
}

fn login_page(flow: &UserFlow, request_id: &str, pending: &PendingAuthorization, client_name: &str, username: &str, error: Option<&str>, status: u16) -> Reply {
    flow.pages.login(
        &flow.url(super::paths::LOGIN),
        request_id,
        &pending.csrf,
        client_name,
        username,
        error,
        status,
        origin_of(&pending.redirect_uri).as_deref(),
    )
}

fn expired(flow: &UserFlow) -> Reply {
    flow.page_error(
        400,
        "expired_request",
        "This sign-in page has expired",
        "Go back to the application and start again.",
    )
}

/// `GET /login?request=…`: the form again (e.g. after a reload).
pub async fn show(flow: &UserFlow, request: &HostedRequest<'_>) -> Reply {
    let request_id = url::form_urlencoded::parse(request.query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "request")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let session = match flow.session(request.headers, request.now).await {
        Ok(Some((key, _))) => key,
        Ok(None) => return expired(flow),
        Err(e) => return flow.unavailable(&e),
    };
    let pending = match flow.pending_for(&request_id, &session).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(flow),
        Err(e) => return flow.unavailable(&e),
    };
    let name = client_name(flow, &pending.client_id).await;
    login_page(flow, &request_id, &pending, &name, "", None, 200)
}

async fn client_name(flow: &UserFlow, client_id: &str) -> String {
    match flow.registry.find(client_id).await {
        Ok(Some(c)) => c.profile.display.name.clone(),
        _ => "An application".to_string(),
    }
}

/// `POST /login`.
pub async fn submit(flow: &UserFlow, request: &HostedRequest<'_>) -> Reply {
    match try_submit(flow, request).await {
        Ok(reply) => reply,
        Err(e) => flow.unavailable(&e),
    }
}

async fn try_submit(flow: &UserFlow, request: &HostedRequest<'_>) -> Result<Reply, StoreError> {
    let Ok(form) = Form::parse(request.headers, &request.body) else {
        return Ok(flow.page_error(400, "invalid_request", "The form could not be read", "Go back to the application and start again."));
    };
    let request_id = form.get("request").unwrap_or_default();
    let Some((session_key, _)) = flow.session(request.headers, request.now).await? else {
        return Ok(expired(flow));
    };
    let Some(pending) = flow.pending_for(request_id, &session_key).await? else {
        // a form from another browser session changes nothing
        return Ok(expired(flow));
    };
    if !csrf_matches(&pending.csrf, form.get("csrf")) {
        return Ok(flow.page_error(403, "csrf_failed", "This form cannot be accepted", "It did not come from this sign-in page."));
    }
    let name = client_name(flow, &pending.client_id).await;
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    if username.is_empty() || password.is_empty() || username.len() > 256 || password.len() > 1024 {
        return Ok(login_page(flow, request_id, &pending, &name, "", Some("Enter your username and password."), 400));
    }

    let login = &flow.config.login;
    let user_key = format!("user:{username}");
    let address_key = format!(
        "addr:{}",
        request.client_ip.map_or("-".to_string(), |ip| crate::downstream::AddressKey::of(ip).to_string())
    );
    let by_user = flow.store.login_failures(&user_key).await?;
    let by_address = flow.store.login_failures(&address_key).await?;
    let wait = [
        (by_user, delay(&by_user, login.max_failures_per_user, login.max_delay)),
        (by_address, delay(&by_address, login.max_failures_per_address, login.max_delay)),
    ]
    .iter()
    .map(|(f, d)| (f.last_at + d.as_secs()).saturating_sub(request.now))
    .max()
    .unwrap_or(0);
    if wait > 0 {
        flow.count("login_throttled");
        tracing::warn!(failures = by_user.count.max(by_address.count), wait_s = wait, "sign-in slowed down after repeated failures");
        let message = format!("Too many failed sign-ins. Try again in {wait} seconds.");
        return Ok(login_page(flow, request_id, &pending, &name, username, Some(&message), 429).with_header("Retry-After", wait.to_string()));
    }

    let Some(user) = flow.users.verify_password(username, password).await else {
        let window = login.failure_window.as_secs();
        flow.store.add_login_failure(&user_key, request.now, window).await?;
        flow.store.add_login_failure(&address_key, request.now, window).await?;
        flow.count("login_failed");
        tracing::info!(client_id = %pending.client_id, "sign-in failed");
        return Ok(login_page(flow, request_id, &pending, &name, username, Some("The username or password is wrong."), 400));
    };
    flow.store.clear_login_failures(&user_key).await?;
    // a new session for the signed-in person; the anonymous one ends
    let (new_key, cookie) = flow.new_session(Some(&user), request.now).await?;
    flow.store.delete_session(&session_key).await?;
    let mut pending = pending;
    pending.session = new_key;
    flow.store.put_pending(request_id, &pending).await?;
    flow.count("logged_in");
    tracing::info!(user = %user.id, client_id = %pending.client_id, "signed in");
    let next = flow.consent_or_code(request_id, &pending, &user, request.now, request.now).await?;
    Ok(next.with_header("Set-Cookie", cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_after_the_allowed_failures() {
        let max = Duration::from_secs(900);
        let f = |count| LoginFailures { count, last_at: 0 };
        assert_eq!(delay(&f(4), 5, max), Duration::ZERO);
        assert_eq!(delay(&f(5), 5, max), Duration::from_secs(5));
        assert_eq!(delay(&f(7), 5, max), Duration::from_secs(20));
        assert_eq!(delay(&f(60), 5, max), max);
    }
}
