//! `clients:`: pre-agreed partners (registration documents, secrets) and the clients of the
//! user-delegated flow (redirect URIs, grant types, public clients).

use super::{parse_client_keys, Builder};
use crate::config::raw::RawClient;
use crate::config::*;
use std::collections::HashSet;

impl Builder {
    pub(super) fn clients(&mut self, raw: &[RawClient]) -> Vec<ConfiguredClient> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let key = format!("clients[{i}]");
            if c.name.trim().is_empty() {
                self.diag.error(format!("{key}.name"), "must not be empty");
            } else if !names.insert(c.name.clone()) {
                self.diag
                    .error(format!("{key}.name"), format!("`{}` is used by another client", c.name));
            }
            let scopes = self.scopes(&format!("{key}.scopes"), &c.scopes);
            if c.scopes.is_empty() {
                self.diag.error(
                    format!("{key}.scopes"),
                    "list what the client may be granted, e.g. [weather.observations:read]",
                );
            }
            let document = c
                .registration_file
                .as_ref()
                .and_then(|f| self.client_document(&format!("{key}.registration_file"), f));
            let secret = self.client_secret(&key, c);
            let public = match c.token_endpoint_auth_method.as_deref() {
                None => false,
                Some("none") => true,
                Some(other) => {
                    self.diag.error(
                        format!("{key}.token_endpoint_auth_method"),
                        format!("`{other}` is not settable here; give `none` for a public client, or keys or a secret for a confidential one"),
                    );
                    false
                }
            };
            let has_credentials = c.registration_file.is_some() || c.client_secret_env.is_some() || c.client_secret_hash.is_some();
            if public && has_credentials {
                self.diag.error(
                    format!("{key}.token_endpoint_auth_method"),
                    "a public client (none) has no registration_file or secret",
                );
            }
            if !public && !has_credentials {
                self.diag.error(
                    key.clone(),
                    "a client needs a registration_file (its registration document with public keys) or a client secret, \
                     or token_endpoint_auth_method: none with redirect_uris for a public client",
                );
            }
            let redirect_uris = self.redirect_uris(&format!("{key}.redirect_uris"), &c.redirect_uris);
            let grant_types = self.grant_types(&key, c, public, !redirect_uris.is_empty());
            if public && c.client_id.is_none() {
                self.diag
                    .error(format!("{key}.client_id"), "a public client needs a fixed client_id");
            }
            if grant_types.authorization_code && redirect_uris.is_empty() {
                self.diag.error(
                    format!("{key}.redirect_uris"),
                    "the authorization_code grant needs at least one redirect URI",
                );
            }
            if grant_types.authorization_code && document.is_none() && c.client_id.is_none() {
                self.diag.error(
                    format!("{key}.client_id"),
                    "a client of the authorization endpoint needs a fixed client_id",
                );
            }
            if let Some(id) = &c.client_id {
                if id.len() < 3 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                    self.diag.error(
                        format!("{key}.client_id"),
                        "must be at least 3 printable characters without spaces",
                    );
                } else if !ids.insert(id.clone()) {
                    self.diag
                        .error(format!("{key}.client_id"), format!("`{id}` is used by another client"));
                }
            } else if secret.is_some() {
                self.diag.error(
                    format!("{key}.client_id"),
                    "a client with a secret needs a fixed client_id to authenticate with",
                );
            }
            if let Some(doc) = &document {
                // A registration is matched to a partner by its keys: no key may belong to two.
                let clash = out.iter().find(|other: &&ConfiguredClient| {
                    other.document.as_ref().is_some_and(|o| {
                        o.thumbprints.iter().any(|t| doc.thumbprints.contains(t))
                            || matches!((&o.keys, &doc.keys), (ClientKeys::JwksUri(a), ClientKeys::JwksUri(b)) if a == b)
                    })
                });
                if let Some(other) = clash {
                    self.diag.error(
                        format!("{key}.registration_file"),
                        format!("shares a key with client `{}`; each partner needs its own keys", other.name),
                    );
                }
            }
            if let Some(uri) = &c.policy_uri {
                if crate::keys::remote::validate_fetch_url(uri).is_err() {
                    self.diag.error(format!("{key}.policy_uri"), "must be an https URL (http only on loopback)");
                }
            }
            out.push(ConfiguredClient {
                name: c.name.clone(),
                document,
                scopes,
                client_id: c.client_id.clone(),
                secret,
                introspection: c.introspection,
                redirect_uris,
                grant_types,
                public,
                display_name: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
                contact: c.contact.clone(),
                policy_uri: c.policy_uri.clone(),
            });
        }
        out
    }

    /// Redirect URIs: absolute, without fragment; https, http on loopback, or a private-use
    /// scheme (RFC 8252 §7.1, e.g. `com.example.app:/cb`) for native apps.
    pub(super) fn redirect_uris(&mut self, key: &str, raw: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, uri) in raw.iter().enumerate() {
            match check_redirect_uri(uri) {
                Ok(()) => out.push(uri.clone()),
                Err(e) => self.diag.error(format!("{key}[{i}]"), e),
            }
        }
        out
    }

    fn grant_types(&mut self, key: &str, c: &RawClient, public: bool, redirects: bool) -> GrantTypes {
        let Some(names) = &c.grant_types else {
            return GrantTypes {
                client_credentials: !public,
                jwt_bearer: !public && c.registration_file.is_some(),
                authorization_code: redirects,
                refresh_token: redirects,
            };
        };
        let mut g = GrantTypes::default();
        for (i, name) in names.iter().enumerate() {
            match name.as_str() {
                GRANT_CLIENT_CREDENTIALS => g.client_credentials = true,
                GRANT_JWT_BEARER | "jwt_bearer" => g.jwt_bearer = true,
                GRANT_AUTHORIZATION_CODE => g.authorization_code = true,
                GRANT_REFRESH_TOKEN => g.refresh_token = true,
                other => self.diag.error(
                    format!("{key}.grant_types[{i}]"),
                    format!("`{other}` is not a grant type; expected client_credentials, {GRANT_JWT_BEARER}, authorization_code or refresh_token"),
                ),
            }
        }
        if public && (g.client_credentials || g.jwt_bearer) {
            self.diag.error(
                format!("{key}.grant_types"),
                "a public client cannot use client_credentials or jwt-bearer (it has no credentials)",
            );
        }
        if g.refresh_token && !g.authorization_code {
            self.diag
                .error(format!("{key}.grant_types"), "refresh_token goes with authorization_code");
        }
        g
    }

    fn client_secret(&mut self, key: &str, c: &RawClient) -> Option<ClientSecret> {
        match (&c.client_secret_env, &c.client_secret_hash) {
            (Some(_), Some(_)) => {
                self.diag.error(
                    format!("{key}.client_secret_env"),
                    "give either client_secret_env or client_secret_hash, not both",
                );
                None
            }
            (Some(var), None) => match std::env::var(var) {
                Ok(value) if value.len() >= 16 => Some(ClientSecret::Plain {
                    env_var: var.clone(),
                    value,
                }),
                Ok(_) => {
                    self.diag.error(
                        format!("{key}.client_secret_env"),
                        format!("the secret in ${var} is shorter than 16 characters"),
                    );
                    None
                }
                Err(_) => {
                    self.diag.error(
                        format!("{key}.client_secret_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            (None, Some(phc)) => match argon2::PasswordHash::new(phc) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => Some(ClientSecret::Argon2 { phc: phc.clone() }),
                _ => {
                    self.diag.error(
                        format!("{key}.client_secret_hash"),
                        "expected an Argon2 PHC string ($argon2id$...); make one with `oada-gateway hash-secret`",
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn client_document(&mut self, key: &str, file: &str) -> Option<ClientDocument> {
        let (path, bytes) = self.read_file(key, file)?;
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.diag
                    .error_in(&path, "", format!("not a JSON registration document: {e}"));
                return None;
            }
        };
        let Some(metadata) = value.as_object().cloned() else {
            self.diag
                .error_in(&path, "", "a registration document must be a JSON object");
            return None;
        };
        match parse_client_keys(&metadata) {
            Ok((keys, thumbprints)) => Some(ClientDocument {
                file: path,
                metadata,
                keys,
                thumbprints,
            }),
            Err((member, message)) => {
                self.diag.error_in(&path, member, message);
                None
            }
        }
    }

}

/// Why `uri` cannot be a redirect URI, if it cannot.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment (RFC 6749 §3.1.2)"));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(format!("`{uri}` must use https (http only on loopback hosts)"));
            }
        }
        "javascript" | "data" | "file" | "about" | "blob" | "vbscript" | "ftp" | "ws" | "wss" => {
            return Err(format!("`{uri}` has a scheme that cannot be a redirect URI"));
        }
        // a private-use scheme of a native app must be a reverse domain name (RFC 8252 §7.1)
        scheme if scheme.contains('.') => {}
        scheme => return Err(format!("`{uri}`: scheme `{scheme}` is neither https nor a reverse-domain private-use scheme")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` must not contain credentials"));
    }
    Ok(())
}
