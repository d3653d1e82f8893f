//! The steps the user-delegated flow's endpoints share (`/authorization`, `/login`, `/consent`):
//! the person's session, sending the browser back to the client (with a code, or an error), the
//! consent page, and issuing the code.
//!
//! A request is validated once, at `/authorization`, and kept as a [`PendingAuthorization`] bound
//! to the browser's session; the sign-in and consent forms carry its id and a CSRF value, and a
//! form from another session or without the value changes nothing.

use super::browser::{self, CookiePolicy};
use super::clients::{Client, ClientRegistry, Trust};
use super::pages::{origin_of, ClientView, Pages, ScopeView};
use super::paths;
use crate::config::{AuthorizationConfig, Issuer};
use crate::ids::random_id;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::scope::{Perm, ScopeSet, ALL_TYPES};
use crate::store::{CodeGrant, PendingAuthorization, Session, Store, StoreError};
use crate::users::{User, UserSource};
use std::sync::Arc;

/// How long a person has to sign in and decide once the request is validated.
pub const PENDING_LIFETIME: u64 = 600;

pub struct UserFlow {
    pub config: AuthorizationConfig,
    pub issuer: Issuer,
    pub store: Arc<dyn Store>,
    pub registry: Arc<ClientRegistry>,
    pub users: Arc<dyn UserSource>,
    pub pages: Pages,
    pub cookies: CookiePolicy,
    pub metrics: Arc<Metrics>,
}

/// The store key of a code: its hash (the store never holds a usable code).
pub fn code_key(code: &str) -> String {
    blake3::hash(code.as_bytes()).to_hex().to_string()
}

/// The sentence a consent page shows for a scope without a configured description.
pub fn describe_scope(scope: &str) -> String {
    let Ok(parsed) = crate::scope::Scope::parse(scope) else {
        return scope.to_string();
    };
    let what = if parsed.kind() == ALL_TYPES {
        "all of your data".to_string()
    } else {
        format!("your {}", parsed.kind().replace(['.', '_', '-'], " "))
    };
    match parsed.perm() {
        Perm::Read => format!("Read {what}"),
        Perm::Write => format!("Add to and change {what}"),
        Perm::All => format!("Read and change {what}"),
    }
}

/// Appends `params` to a redirect URI's query (RFC 6749 §4.1.2: its own query is kept).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in params {
                    pairs.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// A 303 to `location` (after a form post, the browser follows it with a GET).
pub fn see_other(location: &str) -> Reply {
    Reply::empty(303).with_header("Location", location).no_store()
}

impl UserFlow {
    pub fn count(&self, result: &str) {
        self.metrics.authorizations.with_label_values(&[result]).inc();
    }

    /// An error page for the person; counted under `result`.
    pub fn page_error(&self, status: u16, result: &str, title: &str, message: &str) -> Reply {
        self.count(result);
        self.pages.error(status, result, title, message)
    }

    pub fn unavailable(&self, e: &StoreError) -> Reply {
        tracing::warn!(error = %e, "the authorization flow could not reach its store");
        self.page_error(
            503,
            "temporarily_unavailable",
            "Please try again shortly",
            "The sign-in service is briefly unavailable.",
        )
        .with_header("Retry-After", "1")
    }

    pub fn url(&self, endpoint: &str) -> String {
        self.issuer.path(endpoint)
    }

    /// The live session the request's cookie names, with its store key.
    pub async fn session(&self, headers: &http::HeaderMap, now: u64) -> Result<Option<(String, Session)>, StoreError> {
        let Some(value) = browser::session_cookie(headers) else {
            return Ok(None);
        };
        let key = browser::session_key(value);
        Ok(self.store.session(&key).await?.filter(|s| s.expires_at > now).map(|s| (key, s)))
    }

    /// The person signed in to `session`, if they still exist.
    pub fn user_of(&self, session: &Session) -> Option<User> {
        self.users.find(session.user_id.as_deref()?)
    }

    /// A new session (anonymous, or for `user`): its store key and the `Set-Cookie` for it.
    pub async fn new_session(&self, user: Option<&User>, now: u64) -> Result<(String, String), StoreError> {
        let value = browser::new_session_value();
        let key = browser::session_key(&value);
        let lifetime = self.config.session_lifetime.as_secs();
        let session = Session {
            user_id: user.map(|u| u.id.clone()),
            auth_time: user.map(|_| now),
            expires_at: now + lifetime,
        };
        self.store.put_session(&key, &session).await?;
        Ok((key, self.cookies.set(&value, lifetime)))
    }

    /// Sends the browser back to the client with `params`, the request's `state` and the issuer
    /// (RFC 9207).
    pub fn back_to_client(&self, pending: &PendingAuthorization, params: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(state) = &pending.state {
            all.push(("state", state));
        }
        all.push(("iss", self.issuer.as_str()));
        see_other(&with_query(&pending.redirect_uri, &all))
    }

    /// An error for the client (RFC 6749 §4.1.2.1), once its redirect URI is known to be its own.
    pub fn error_to_client(&self, pending: &PendingAuthorization, result: &str, error: &str, description: &str) -> Reply {
        self.count(result);
        tracing::info!(client_id = %pending.client_id, error, reason = description, "authorization request refused");
        self.back_to_client(pending, &[("error", error), ("error_description", description)])
    }

    /// What a signed-in person sees next: the consent page, or (consent remembered for these
    /// scopes) the way back to the client with a code.
    pub async fn consent_or_code(
        &self,
        request_id: &str,
        pending: &PendingAuthorization,
        user: &User,
        auth_time: u64,
        now: u64,
    ) -> Result<Reply, StoreError> {
        if self.config.remember_consent {
            let remembered = self.store.consent(&consent_key(&user.id, &pending.client_id)).await?;
            let requested = ScopeSet::parse(&pending.scope).unwrap_or_default();
            if let Some(granted) = remembered.and_then(|s| ScopeSet::parse(&s).ok()) {
                if granted.uncovered(&requested).is_empty() {
                    self.count("remembered");
                    return self.issue_code(request_id, pending, user, auth_time, now).await;
                }
            }
        }
        Ok(see_other(&format!("{}?request={request_id}", self.url(paths::CONSENT))))
    }

    /// The consent page of a pending request.
    pub fn consent_page(&self, request_id: &str, pending: &PendingAuthorization, client: &Client, user: &User) -> Reply {
        let site = self.issuer.as_str();
        let display = &client.profile.display;
        let trust = match &display.trust {
            Trust::Configured => format!("{site} has registered this application."),
            Trust::Discovery { provider } => {
                format!("Registered with {provider}, a client discovery provider {site} trusts.")
            }
            Trust::TrustedStatement => format!("Registered with a software statement from a party {site} trusts."),
            Trust::UntrustedStatement => {
                format!("Not verified: no party {site} trusts vouches for this application. Allow it only if you know it.")
            }
        };
        let view = ClientView {
            name: display.name.clone(),
            contact: display.contact.clone(),
            puc: display.puc.clone(),
            licenses: display.licenses.clone(),
            trusted: display.trust.is_trusted(),
            trust,
        };
        let scopes: Vec<ScopeView> = ScopeSet::parse(&pending.scope)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let name = s.to_string();
                let description = self
                    .config
                    .scope_descriptions
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| describe_scope(&name));
                ScopeView { name, description }
            })
            .collect();
        let origin = origin_of(&pending.redirect_uri).unwrap_or_default();
        self.pages.consent(
            &self.url(paths::CONSENT),
            request_id,
            &pending.csrf,
            &view,
            &user.name,
            &scopes,
            &origin,
        )
    }

    /// Issues the code of an approved request and sends the browser back with it.
    pub async fn issue_code(
        &self,
        request_id: &str,
        pending: &PendingAuthorization,
        user: &User,
        auth_time: u64,
        now: u64,
    ) -> Result<Reply, StoreError> {
        let code = random_id(32);
        let grant = CodeGrant {
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            redirect_uri_given: pending.redirect_uri_given,
            user_id: user.id.clone(),
            scope: pending.scope.clone(),
            code_challenge: pending.code_challenge.clone(),
            auth_time,
            expires_at: now + self.config.code_lifetime.as_secs(),
            grant_id: random_id(16),
        };
        self.store.put_code(&code_key(&code), &grant).await?;
        self.store.delete_pending(request_id).await?;
        tracing::info!(client_id = %pending.client_id, user = %user.id, scope = %pending.scope, "authorization code issued");
        Ok(self.back_to_client(pending, &[("code", &code)]))
    }

    /// Remembers that `user` consented to `scope` for `client_id`.
    pub async fn remember_consent(&self, user_id: &str, client_id: &str, scope: &str, now: u64) -> Result<(), StoreError> {
        if !self.config.remember_consent {
            return Ok(());
        }
        let key = consent_key(user_id, client_id);
        let merged = match self.store.consent(&key).await?.and_then(|s| ScopeSet::parse(&s).ok()) {
            Some(before) => format!("{before} {scope}"),
            None => scope.to_string(),
        };
        let merged = ScopeSet::parse(&merged).map(|s| s.to_string()).unwrap_or_else(|_| scope.to_string());
        self.store
            .put_consent(&key, &merged, now + self.config.consent_lifetime.as_secs())
            .await
    }

    /// The pending request `request_id`, if it belongs to the browser session `session_key`.
    pub async fn pending_for(&self, request_id: &str, session_key: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        if request_id.len() > 64 {
            return Ok(None);
        }
        Ok(self
            .store
            .pending(request_id)
            .await?
            .filter(|p| crate::secrets::plain_matches(&p.session, session_key)))
    }
}

fn consent_key(user_id: &str, client_id: &str) -> String {
    format!("{user_id}\n{client_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_sentences() {
        assert_eq!(describe_scope("weather.observations:read"), "Read your weather observations");
        assert_eq!(describe_scope("bookmarks.fields:write"), "Add to and change your bookmarks fields");
        assert_eq!(describe_scope("all:all"), "Read and change all of your data");
    }

    #[test]
    fn redirects_keep_the_clients_query() {
        assert_eq!(
            with_query("https://app.example/cb?x=1", &[("code", "c d"), ("state", "s")]),
            "https://app.example/cb?x=1&code=c+d&state=s"
        );
    }
}
