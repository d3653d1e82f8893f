//! `oada-gateway check`: validate a config file and summarize it, or list every error.

use crate::config::{ClientKeys, Config, HealthCheckKind, TrustSource};
use crate::keys::jwk::algorithm_name;
use crate::routes::{RouteAuth, ScopeRequirement};
use std::path::Path;

pub fn run(path: &Path) -> i32 {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", summary(&config));
            0
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("error: {e}");
            }
            let n = errors.iter().count();
            eprintln!("{}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            1
        }
    }
}

pub fn summary(c: &Config) -> String {
    let mut out = format!("{}: OK\n", c.file.display());
    let scheme = if c.tls.is_some() { "https" } else { "http" };
    out += &format!("listeners:\n  proxy  {} ({scheme})\n  admin  {} (/metrics /healthz /readyz)\n", c.listen, c.admin_listen);
    out += &format!("issuer: {} (audience {})\n", c.issuer.as_str(), c.audience);
    out += &key_lines(c);
    out += &match &c.store {
        crate::config::StoreConfig::Memory => "store: in memory (one replica)\n".to_string(),
        crate::config::StoreConfig::Redis(r) => format!(
            "store: {} (prefix {:?}, command timeout {:?}, on outage {:?} for at most {:?})\n",
            match &r.servers {
                crate::config::RedisServers::Single(url) => format!("Redis {}", crate::redact::text(url)),
                crate::config::RedisServers::Cluster(nodes) => format!("Redis Cluster of {} seed nodes", nodes.len()),
            },
            r.key_prefix,
            r.command_timeout,
            r.on_outage,
            r.max_stale
        ),
    };
    out += &format!("routes: {}\n", c.routes.len());
    for r in c.routes.routes() {
        let methods = r
            .methods
            .as_ref()
            .map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "*".into());
        let auth = match &r.auth {
            RouteAuth::None => "no auth".to_string(),
            RouteAuth::Bearer(ScopeRequirement::All(s)) if s.is_empty() => "any valid token".to_string(),
            RouteAuth::Bearer(ScopeRequirement::All(s)) => {
                format!("scopes {}", s.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" "))
            }
            RouteAuth::Bearer(ScopeRequirement::ByMethod { kind }) => format!("scope {kind}:read|write by method"),
        };
        out += &format!("  {methods:<10} {:<24} -> {} [{auth}]\n", r.prefix, c.upstreams[r.upstream].name);
    }
    out += &format!("upstreams: {}\n", c.upstreams.len());
    for u in &c.upstreams {
        let hc = match &u.health_check.kind {
            HealthCheckKind::None => "no health check".to_string(),
            HealthCheckKind::Tcp => format!("tcp check every {:?}", u.health_check.interval),
            HealthCheckKind::Http { path } => format!("http check GET {path} every {:?}", u.health_check.interval),
        };
        let servers: Vec<String> = u.servers.iter().map(|s| s.to_string()).collect();
        out += &format!("  {}: {} ({hc})\n", u.name, servers.join(", "));
    }
    out += &format!("clients: {}\n", c.clients.len());
    for cl in &c.clients {
        let keys = match cl.document.as_ref().map(|d| &d.keys) {
            Some(ClientKeys::Jwks(set)) => format!("{} key(s) in its registration document", set.keys().len()),
            Some(ClientKeys::JwksUri(uri)) => format!("keys at {uri}"),
            None => "no registration document".into(),
        };
        let secret = if cl.secret.is_some() { ", client secret" } else { "" };
        out += &format!("  {}: {keys}{secret}; may get {}\n", cl.name, cl.scopes);
    }
    if let Some(a) = &c.authorization {
        out += &format!(
            "authorization endpoint: {} people from {}; codes live {:?}, PKCE {}; sessions {:?}; refresh tokens {:?} (idle {:?}); consent {}\n",
            a.users.len(),
            a.users_file.display(),
            a.code_lifetime,
            if a.require_pkce { "required" } else { "optional (public clients still need it)" },
            a.session_lifetime,
            a.refresh_token_lifetime,
            a.refresh_token_idle_lifetime,
            if a.remember_consent { "remembered" } else { "asked every time" },
        );
        if let Some(d) = &a.client_discovery {
            out += &format!("  client discovery: trusted providers {}; discovered clients may get {}\n", d.trusted_providers.join(", "), d.scopes);
        }
        for cl in c.clients.iter().filter(|cl| cl.grant_types.authorization_code) {
            out += &format!(
                "  {} ({}): {}, redirect URIs {}\n",
                cl.display_name,
                cl.client_id.as_deref().unwrap_or("registered ids"),
                if cl.public { "public client" } else { "confidential client" },
                cl.redirect_uris.join(" ")
            );
        }
    }
    if let Some(s) = &c.software_statements {
        let sources: Vec<String> = s
            .trusted
            .iter()
            .map(|t| match t {
                TrustSource::Jwks(set) => format!("{} trusted key(s)", set.keys().len()),
                TrustSource::Jku(u) => format!("jku {u}"),
                TrustSource::TrustedListUrl(u) => format!("trusted list {u}"),
            })
            .collect();
        out += &format!(
            "software statements: trusted signers: {}; untrusted {}\n",
            if sources.is_empty() { "none".to_string() } else { sources.join(", ") },
            if s.allow_untrusted { "allowed" } else { "refused" }
        );
    }
    out
}

/// The signing keys, one line each: status, and for a retired key until when it is published and
/// from when it may be removed.
pub fn key_lines(c: &Config) -> String {
    let mut out = String::new();
    out += "signing keys:\n";
    for k in c.keys.keys() {
        let what = match (k.lifecycle.status, k.lifecycle.retired_at) {
            (crate::keys::KeyStatus::Active, _) => "signs".to_string(),
            (crate::keys::KeyStatus::Next, _) => "published and verifies; signs after `keys rotate`".to_string(),
            (crate::keys::KeyStatus::Retired, Some(at)) => {
                let time = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
                // partner client_ids it issued are checked against it until they expire
                let removable = at + (c.token_lifetime + c.leeway).max(c.registration.lifetime);
                format!(
                    "verifies; published until {}; may be removed from {}",
                    c.keys.published_until(k).map(time).unwrap_or_default(),
                    time(removable)
                )
            }
            (crate::keys::KeyStatus::Retired, None) => "verifies".to_string(),
        };
        out += &format!("  {} {} {} ({what})\n", k.kid, algorithm_name(k.alg), k.lifecycle.status.name());
    }
    out
}
