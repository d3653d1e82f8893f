//! `/consent`: the consent page of a pending authorization request (`GET`) and the person's
//! decision (`POST`, field `decision` = `approve` or `deny`, with `request` and `csrf`). Approve
//! issues the code and sends the browser back to the client; deny sends it back with
//! `error=access_denied`. Both need the signed-in session the request is bound to and its CSRF
//! value.

use super::browser::csrf_matches;
use super::form::Form;
use super::user_flow::UserFlow;
use super::HostedRequest;
use crate::reply::Reply;
use crate::store::{PendingAuthorization, StoreError};
use crate::users::User;

fn expired(flow: &UserFlow) -> Reply {
    flow.page_error(
        400,
        "expired_request",
        "This page has expired",
        "Go back to the application and start again.",
    )
}

/// The signed-in person and the pending request `request_id` of their session.
async fn context(flow: &UserFlow, request: &HostedRequest<'_>, request_id: &str) -> Result<Result<(User, u64, PendingAuthorization), Reply>, StoreError> {
    let Some((session_key, session)) = flow.session(request.headers, request.now).await? else {
        return Ok(Err(expired(flow)));
    };
    let (Some(user), Some(auth_time)) = (flow.user_of(&session), session.auth_time) else {
        return Ok(Err(expired(flow)));
    };
    let Some(pending) = flow.pending_for(request_id, &session_key).await? else {
        return Ok(Err(expired(flow)));
    };
    Ok(Ok((user, auth_time, pending)))
}

/// `GET /consent?request=…`
pub async fn show(flow: &UserFlow, request: &HostedRequest<'_>) -> Reply {
    let request_id = url::form_urlencoded::parse(request.query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "request")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let (user, _, pending) = match context(flow, request, &request_id).await {
        Ok(Ok(c)) => c,
        Ok(Err(page)) => return page,
        Err(e) => return flow.unavailable(&e),
    };
    match flow.registry.find(&pending.client_id).await {
        Ok(Some(client)) => flow.consent_page(&request_id, &pending, &client, &user),
        _ => expired(flow),
    }
}

/// `POST /consent`
pub async fn decide(flow: &UserFlow, request: &HostedRequest<'_>) -> Reply {
    match try_decide(flow, request).await {
        Ok(reply) => reply,
        Err(e) => flow.unavailable(&e),
    }
}

async fn try_decide(flow: &UserFlow, request: &HostedRequest<'_>) -> Result<Reply, StoreError> {
    let Ok(form) = Form::parse(request.headers, &request.body) else {
        return Ok(flow.page_error(400, "invalid_request", "The form could not be read", "Go back to the application and start again."));
    };
    let request_id = form.get("request").unwrap_or_default();
    let (user, auth_time, pending) = match context(flow, request, request_id).await? {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    if !csrf_matches(&pending.csrf, form.get("csrf")) {
        return Ok(flow.page_error(403, "csrf_failed", "This form cannot be accepted", "It did not come from this consent page."));
    }
    match form.get("decision") {
        Some("approve") => {
            flow.remember_consent(&user.id, &pending.client_id, &pending.scope, request.now).await?;
            flow.count("approved");
            flow.issue_code(request_id, &pending, &user, auth_time, request.now).await
        }
        Some("deny") => {
            flow.store.delete_pending(request_id).await?;
            Ok(flow.error_to_client(&pending, "denied", "access_denied", "the person denied the request"))
        }
        _ => Ok(flow.page_error(400, "invalid_request", "No decision", "Choose Allow or Deny.")),
    }
}
