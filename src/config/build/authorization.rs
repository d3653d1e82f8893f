//! `authorization:`: the user-delegated flow (people, sessions, codes, refresh tokens, consent,
//! OADA client discovery).

use super::{secs, Builder};
use crate::config::raw::{RawAuthorization, RawUser};
use crate::config::*;
use std::collections::HashSet;

const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const CODE_LIFETIME: Duration = Duration::from_secs(60);
const MAX_CODE_LIFETIME: Duration = Duration::from_secs(600);
const CONSENT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
const REFRESH_IDLE_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

impl Builder {
    pub(super) fn authorization(&mut self, raw: &RawAuthorization) -> Option<AuthorizationConfig> {
        const KEY: &str = "authorization";
        let users = match &raw.users_file {
            Some(file) => self.users(&format!("{KEY}.users_file"), file),
            None => {
                self.diag.error(
                    format!("{KEY}.users_file"),
                    "the authorization endpoint needs people to sign in: a YAML list of {username, password_hash, name, id}",
                );
                None
            }
        };
        let code_lifetime = secs(raw.code_lifetime, CODE_LIFETIME);
        if code_lifetime < Duration::from_secs(1) || code_lifetime > MAX_CODE_LIFETIME {
            self.diag
                .error(format!("{KEY}.code_lifetime"), "must be between 1s and 10m (RFC 6749 §4.1.2)");
        }
        let refresh_token_lifetime = secs(raw.refresh_token_lifetime, REFRESH_LIFETIME);
        let refresh_token_idle_lifetime = secs(raw.refresh_token_idle_lifetime, REFRESH_IDLE_LIFETIME).min(refresh_token_lifetime);
        let session_lifetime = secs(raw.session_lifetime, SESSION_LIFETIME);
        for (k, d) in [
            ("session_lifetime", session_lifetime),
            ("refresh_token_lifetime", refresh_token_lifetime),
            ("refresh_token_idle_lifetime", refresh_token_idle_lifetime),
        ] {
            if d < Duration::from_secs(60) || d > Duration::from_secs(365 * 86_400) {
                self.diag.error(format!("{KEY}.{k}"), "must be between 1m and 365d");
            }
        }
        let mut scope_descriptions = std::collections::BTreeMap::new();
        for (scope, text) in &raw.scope_descriptions {
            if crate::scope::Scope::parse(scope).is_err() {
                self.diag.error(
                    format!("{KEY}.scope_descriptions.{scope}"),
                    "not an OADA scope (<type>:<perm>)",
                );
            }
            scope_descriptions.insert(scope.clone(), text.clone());
        }
        let client_discovery = raw.client_discovery.as_ref().map(|d| {
            let key = format!("{KEY}.client_discovery");
            let mut providers = Vec::new();
            for (i, p) in d.trusted_providers.iter().enumerate() {
                let valid = !p.is_empty()
                    && url::Url::parse(&format!("https://{p}/")).is_ok_and(|u| u.host_str().is_some() && u.path() == "/" && format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default()).eq_ignore_ascii_case(p));
                if valid {
                    providers.push(p.to_ascii_lowercase());
                } else {
                    self.diag.error(
                        format!("{key}.trusted_providers[{i}]"),
                        format!("`{p}` is not a host or host:port (e.g. client.discovery.example)"),
                    );
                }
            }
            if d.scopes.is_empty() {
                self.diag
                    .error(format!("{key}.scopes"), "list what discovered clients may ask for");
            }
            let scopes = self.scopes(&format!("{key}.scopes"), &d.scopes);
            ClientDiscoveryConfig {
                trusted_providers: providers,
                scopes,
                cache_ttl: secs(d.cache_ttl, Duration::from_secs(600)),
                max_entries: d.max_entries.unwrap_or(10_000).max(1),
                timeout: secs(d.timeout, Duration::from_secs(5)),
            }
        });
        let login = raw.login.as_ref();
        let login = LoginConfig {
            max_failures_per_user: login.and_then(|l| l.max_failures_per_user).unwrap_or(5).max(1),
            max_failures_per_address: login.and_then(|l| l.max_failures_per_address).unwrap_or(20).max(1),
            failure_window: secs(login.and_then(|l| l.failure_window), Duration::from_secs(900)),
            max_delay: secs(login.and_then(|l| l.max_delay), Duration::from_secs(900)),
        };
        let (users_file, users) = users?;
        Some(AuthorizationConfig {
            users_file,
            users,
            session_lifetime,
            code_lifetime,
            require_pkce: raw.require_pkce.unwrap_or(true),
            remember_consent: raw.remember_consent.unwrap_or(false),
            consent_lifetime: secs(raw.consent_lifetime, CONSENT_LIFETIME),
            refresh_token_lifetime,
            refresh_token_idle_lifetime,
            scope_descriptions,
            client_discovery,
            login,
        })
    }

    /// Loads the people of the users file.
    fn users(&mut self, key: &str, file: &str) -> Option<(PathBuf, Vec<UserRecord>)> {
        let (path, bytes) = self.read_file(key, file)?;
        let raw: Vec<RawUser> = match serde_yaml::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                self.diag.error_in(&path, "", format!("expected a YAML list of {{username, password_hash, name, id}}: {e}"));
                return None;
            }
        };
        let mut usernames = HashSet::new();
        let mut ids = HashSet::new();
        let mut users = Vec::new();
        for (i, u) in raw.into_iter().enumerate() {
            let at = format!("[{i}]");
            if u.username.trim().is_empty() || u.username.len() > 256 {
                self.diag.error_in(&path, format!("{at}.username"), "must be 1 to 256 characters");
            } else if !usernames.insert(u.username.clone()) {
                self.diag
                    .error_in(&path, format!("{at}.username"), format!("`{}` is listed twice", u.username));
            }
            match argon2::PasswordHash::new(&u.password_hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
                _ => self.diag.error_in(
                    &path,
                    format!("{at}.password_hash"),
                    "expected an Argon2 PHC string ($argon2id$...); make one with `oada-gateway hash-secret`",
                ),
            }
            let id = u.id.clone().unwrap_or_else(|| u.username.clone());
            if id.is_empty() || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                self.diag
                    .error_in(&path, format!("{at}.id"), "must be printable ASCII without spaces (it is the tokens' sub)");
            } else if !ids.insert(id.clone()) {
                self.diag.error_in(&path, format!("{at}.id"), format!("`{id}` is used twice"));
            }
            users.push(UserRecord {
                name: u.name.clone().unwrap_or_else(|| u.username.clone()),
                username: u.username,
                password_hash: u.password_hash,
                id,
            });
        }
        Some((path, users))
    }
}
