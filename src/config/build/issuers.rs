//! `issuers:`: external authorization servers whose access tokens the proxy accepts beside the
//! gateway's own.

use super::{secs, Builder};
use crate::config::raw::{RawIntrospection, RawIssuer, RawJwksCache};
use crate::config::{
    EnvSecret, ExternalIssuerConfig, IntrospectionConfig, IssuerStartup, JwksCacheConfig, KeySource, ScopeClaim,
};
use crate::keys::jwk::{parse_algorithm, ASSERTION_ALGORITHMS};
use crate::keys::{remote, PublicJwkSet};
use jsonwebtoken::Algorithm;
use std::collections::HashSet;
use std::time::Duration;

/// RS256 and ES256 unless the issuer says otherwise: what Keycloak, Auth0, Hydra and
/// oidc-provider sign with by default.
const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

impl Builder {
    pub(super) fn issuers(&mut self, raw: &[RawIssuer], own_issuer: Option<&str>) -> Vec<ExternalIssuerConfig> {
        let mut seen = HashSet::new();
        raw.iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let key = format!("issuers[{i}]");
                if r.issuer.trim().is_empty() {
                    self.diag.error(format!("{key}.issuer"), "must not be empty (the exact `iss` of its tokens)");
                    return None;
                }
                if own_issuer == Some(r.issuer.as_str()) {
                    self.diag.error(
                        format!("{key}.issuer"),
                        "is the gateway's own issuer; list only other authorization servers",
                    );
                }
                if !seen.insert(r.issuer.clone()) {
                    self.diag.error(format!("{key}.issuer"), format!("`{}` is listed twice", r.issuer));
                }
                if r.discovery {
                    if let Err(e) = remote::validate_fetch_url(&r.issuer) {
                        self.diag.error(format!("{key}.issuer"), format!("discovery needs an issuer URL: {e}"));
                    }
                }
                let keys = self.key_source(&key, r);
                let introspection = r.introspection.as_ref().and_then(|x| self.introspection(&key, x, r.discovery));
                if keys.is_none() && introspection.is_none() {
                    self.diag.error(
                        key.clone(),
                        "give the issuer's keys (discovery: true, jwks_uri or jwks_file), introspection, or both",
                    );
                }
                if r.audiences.is_empty() {
                    self.diag.error(
                        format!("{key}.audiences"),
                        "list the `aud` values this API accepts (e.g. [https://api.example.com]); a token for another API must not pass",
                    );
                }
                let algorithms = self.algorithms(&key, r.algorithms.as_deref());
                let scope_claim = match r.scope_claim.as_deref() {
                    None | Some("scope") => ScopeClaim::Scope,
                    Some("scp") => ScopeClaim::Scp,
                    Some("both") => ScopeClaim::Both,
                    Some(other) => {
                        self.diag.error(
                            format!("{key}.scope_claim"),
                            format!("`{other}` is not a scope claim; expected scope, scp or both"),
                        );
                        ScopeClaim::Scope
                    }
                };
                let startup = match r.startup.as_deref() {
                    None | Some("degraded") => IssuerStartup::Degraded,
                    Some("fail") => IssuerStartup::Fail,
                    Some(other) => {
                        self.diag.error(
                            format!("{key}.startup"),
                            format!("`{other}` is not a start-up mode; expected degraded or fail"),
                        );
                        IssuerStartup::Degraded
                    }
                };
                let jwks_cache = self.jwks_cache(&key, &r.jwks_cache);
                if let Some(name) = &r.name {
                    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == ':') {
                        self.diag.error(
                            format!("{key}.name"),
                            "must be 1-256 printable characters without `:` (it prefixes the issuer's subjects: `<name>:<sub>`)",
                        );
                    }
                }
                if r.shares_subjects && r.name.is_some() {
                    self.diag.error(
                        format!("{key}.name"),
                        "names the prefix of the issuer's subjects, which shares_subjects: true leaves off; give one or the other",
                    );
                }
                if let Some(typ) = &r.require_typ {
                    if typ.is_empty() || !typ.bytes().all(|b| b.is_ascii_graphic()) {
                        self.diag.error(format!("{key}.require_typ"), "must be a media type such as at+jwt");
                    }
                }
                Some(ExternalIssuerConfig {
                    issuer: r.issuer.clone(),
                    keys,
                    audiences: r.audiences.clone(),
                    algorithms,
                    scope_claim,
                    introspection,
                    jwks_cache,
                    startup,
                    subject_prefix: (!r.shares_subjects).then(|| r.name.clone().unwrap_or_else(|| r.issuer.clone())),
                    require_typ: r.require_typ.clone(),
                })
            })
            .collect()
    }

    fn key_source(&mut self, key: &str, r: &RawIssuer) -> Option<KeySource> {
        let given = [r.discovery, r.jwks_uri.is_some(), r.jwks_file.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            self.diag
                .error(key.to_string(), "give one of discovery: true, jwks_uri or jwks_file");
            return None;
        }
        if let Some(url) = &r.jwks_uri {
            return self.fetch_url(&format!("{key}.jwks_uri"), url).map(KeySource::Url);
        }
        if let Some(file) = &r.jwks_file {
            let (path, bytes) = self.read_file(&format!("{key}.jwks_file"), file)?;
            return match serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|v| PublicJwkSet::from_json(&v).map_err(|e| e.to_string()))
            {
                Ok(set) => Some(KeySource::File(set)),
                Err(e) => {
                    self.diag.error_in(&path, "", format!("not a JWK set: {e}"));
                    None
                }
            };
        }
        // discovery without introspection-only use: keys from the discovered jwks_uri
        r.discovery.then_some(KeySource::Discovery)
    }

    fn introspection(&mut self, key: &str, x: &RawIntrospection, discovery: bool) -> Option<IntrospectionConfig> {
        let key = format!("{key}.introspection");
        let endpoint = match &x.endpoint {
            Some(url) => Some(self.fetch_url(&format!("{key}.endpoint"), url)?),
            None if discovery => None,
            None => {
                self.diag.error(
                    format!("{key}.endpoint"),
                    "required unless the issuer has discovery: true (then its introspection_endpoint is used)",
                );
                return None;
            }
        };
        if x.client_id.trim().is_empty() {
            self.diag.error(format!("{key}.client_id"), "must not be empty");
        }
        let client_secret = match std::env::var(&x.client_secret_env) {
            Ok(value) if !value.is_empty() => EnvSecret {
                env_var: x.client_secret_env.clone(),
                value,
            },
            _ => {
                self.diag.error(
                    format!("{key}.client_secret_env"),
                    format!("environment variable {} is not set", x.client_secret_env),
                );
                return None;
            }
        };
        let config = IntrospectionConfig {
            endpoint,
            client_id: x.client_id.clone(),
            client_secret,
            cache_max: secs(x.cache_max, Duration::from_secs(300)),
            inactive_cache: secs(x.inactive_cache, Duration::from_secs(10)),
            timeout: secs(x.timeout, Duration::from_secs(3)),
        };
        if config.cache_max > Duration::from_secs(24 * 3600) {
            self.diag.error(format!("{key}.cache_max"), "must be at most 24h (e.g. 5m)");
        }
        if config.inactive_cache > Duration::from_secs(300) {
            self.diag.error(format!("{key}.inactive_cache"), "must be at most 5m (e.g. 10s)");
        }
        if config.timeout.is_zero() || config.timeout > Duration::from_secs(30) {
            self.diag.error(format!("{key}.timeout"), "must be between 1ms and 30s (e.g. 3s)");
        }
        Some(config)
    }

    fn algorithms(&mut self, key: &str, names: Option<&[String]>) -> Vec<Algorithm> {
        let Some(names) = names else {
            return DEFAULT_ALGORITHMS.to_vec();
        };
        if names.is_empty() {
            self.diag.error(format!("{key}.algorithms"), "list at least one algorithm, or omit the key for RS256 and ES256");
        }
        let mut algorithms = Vec::new();
        for (j, name) in names.iter().enumerate() {
            match parse_algorithm(name) {
                Some(alg) if ASSERTION_ALGORITHMS.contains(&alg) => algorithms.push(alg),
                _ => self.diag.error(
                    format!("{key}.algorithms[{j}]"),
                    format!("`{name}` is not accepted; expected RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA (never none or HMAC)"),
                ),
            }
        }
        algorithms
    }

    fn jwks_cache(&mut self, key: &str, raw: &RawJwksCache) -> JwksCacheConfig {
        let c = JwksCacheConfig {
            min_refresh: secs(raw.min_refresh, Duration::from_secs(60)),
            max_refresh: secs(raw.max_refresh, Duration::from_secs(3600)),
            unknown_kid_cooldown: secs(raw.unknown_kid_cooldown, Duration::from_secs(10)),
            max_stale: secs(raw.max_stale, Duration::from_secs(24 * 3600)),
            timeout: secs(raw.timeout, Duration::from_secs(3)),
        };
        let key = format!("{key}.jwks_cache");
        if c.min_refresh < Duration::from_secs(1) || c.min_refresh > c.max_refresh {
            self.diag.error(format!("{key}.min_refresh"), "must be at least 1s and at most max_refresh");
        }
        if c.unknown_kid_cooldown < Duration::from_millis(100) {
            self.diag.error(format!("{key}.unknown_kid_cooldown"), "must be at least 100ms (e.g. 10s)");
        }
        if c.max_stale < c.min_refresh {
            self.diag.error(format!("{key}.max_stale"), "must be at least min_refresh (e.g. 24h)");
        }
        if c.timeout.is_zero() || c.timeout > Duration::from_secs(30) {
            self.diag.error(format!("{key}.timeout"), "must be between 1ms and 30s (e.g. 3s)");
        }
        c
    }
}
