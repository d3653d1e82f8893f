//! Turns the raw file format into the validated [`Config`], collecting every error. Each
//! section with enough rules of its own has a file here.

mod authorization;
mod issuers;
pub(crate) mod clients;
mod rate_limits;
mod sections;
mod server;
mod store;

use super::duration::ConfigDuration;
use super::env::{expand_tree, Environment};
use super::error::{ConfigError, ConfigErrors, Diagnostics};
use super::raw::*;
use super::*;
use crate::keys::{self, remote, KeyLifecycle, KeyRing, KeyStatus, PublicJwkSet, SigningKey};
use crate::oauth::paths;
use crate::routes::{Route, RouteAuth, RouteTable, ScopeRequirement};
use crate::scope::{Perm, Scope, ScopeSet};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const MAX_LEEWAY: Duration = Duration::from_secs(300);

pub(super) fn build(text: &str, path: &Path, environment: &dyn Environment) -> Result<Config, ConfigErrors> {
    let single = |key: String, message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            key,
            message,
        }])
    };
    let mut tree: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| single(String::new(), format!("not valid YAML: {e}")))?;
    if tree.is_null() {
        return Err(single(String::new(), "the file is empty".into()));
    }
    // Every problem is reported at once: variables, then each section (and each list item) on
    // its own, then the validation of everything that parsed.
    let mut early = expand_tree(&mut tree, environment);
    let mut failed: Vec<String> = early.iter().map(|(k, _)| k.clone()).collect();
    let raw = sections::parse(tree, &mut early, &mut failed);
    let mut errors: Vec<ConfigError> = early
        .into_iter()
        .map(|(key, message)| ConfigError {
            file: path.to_path_buf(),
            key,
            message,
        })
        .collect();
    let Some(raw) = raw else {
        return Err(ConfigErrors(errors));
    };
    let mut builder = Builder::new(path);
    builder.sources.update(text.as_bytes());
    match builder.build(raw) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(validation) => {
            // a section that did not parse was validated with its defaults: skip what that says
            // (and what routes say of upstreams that did not parse)
            if failed.iter().any(|f| f.starts_with("upstreams")) {
                failed.push("routes".into());
            }
            let under_failed = |key: &str| {
                failed.iter().any(|f| {
                    let section = f.split(['.', '[']).next().unwrap_or(f);
                    key == section || key.starts_with(&format!("{section}.")) || key.starts_with(&format!("{section}["))
                })
            };
            errors.extend(validation.0.into_iter().filter(|e| !under_failed(&e.key)));
            Err(ConfigErrors(errors))
        }
    }
}

struct Builder {
    diag: Diagnostics,
    base_dir: PathBuf,
    /// Everything read: the config text and each file it points at ([`Config::hash`]).
    sources: blake3::Hasher,
}

fn secs(d: Option<ConfigDuration>, default: Duration) -> Duration {
    d.map(|d| d.0).unwrap_or(default)
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl Builder {
    fn new(path: &Path) -> Self {
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Builder {
            diag: Diagnostics::new(path),
            base_dir,
            sources: blake3::Hasher::new(),
        }
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn read_file(&mut self, key: &str, file: &str) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.resolve(file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                for part in [path.as_os_str().as_encoded_bytes(), &bytes] {
                    self.sources.update(&(part.len() as u64).to_le_bytes());
                    self.sources.update(part);
                }
                Some((path, bytes))
            }
            Err(e) => {
                self.diag
                    .error(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn build(mut self, raw: RawConfig) -> Result<Config, ConfigErrors> {
        let listen = self.addr("listen", &raw.listen);
        let admin_listen = self.addr("admin_listen", &raw.admin_listen);
        if let (Some(l), Some(a)) = (listen, admin_listen) {
            if l == a {
                self.diag
                    .error("admin_listen", "must differ from `listen`; the admin port serves metrics and health");
            }
        }
        let tls = raw.tls.as_ref().map(|t| self.tls(t));
        let issuer = self.issuer(&raw.issuer);
        let audience = match raw.audience {
            Some(a) if a.trim().is_empty() => {
                self.diag.error("audience", "must not be empty");
                None
            }
            Some(a) => Some(a),
            None => issuer.as_ref().map(|i| i.as_str().to_string()),
        };
        let keys = self.signing_keys(&raw.signing_keys);
        let token_lifetime = secs(raw.token_lifetime, DEFAULT_TOKEN_LIFETIME);
        if token_lifetime < Duration::from_secs(1) || token_lifetime > MAX_TOKEN_LIFETIME {
            self.diag
                .error("token_lifetime", "must be between 1s and 24h (e.g. 1h)");
        }
        let leeway = secs(raw.leeway, DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            self.diag.error("leeway", "must be at most 5m (e.g. 30s)");
        }
        let clients = self.clients(&raw.clients);
        let software_statements = raw
            .software_statements
            .as_ref()
            .map(|s| self.software_statements(s));
        let upstreams = self.upstreams(&raw.upstreams);
        let issuers = self.issuers(&raw.issuers, issuer.as_ref().map(|i| i.as_str()));
        let routes = self.routes(&raw.routes, &upstreams, issuer.as_ref(), &issuers);
        let cache = self.cache(&raw.cache);
        let registration = RegistrationConfig {
            lifetime: secs(raw.registration.lifetime, Duration::from_secs(24 * 3600)),
            max_entries: raw.registration.max_entries.unwrap_or(100_000),
        };
        if registration.lifetime < Duration::from_secs(60) {
            self.diag
                .error("registration.lifetime", "must be at least 1m (e.g. 24h)");
        }
        if registration.max_entries == 0 {
            self.diag
                .error("registration.max_entries", "must be at least 1");
        }
        let token_endpoint = TokenEndpointConfig {
            max_assertion_lifetime: secs(raw.token_endpoint.max_assertion_lifetime, Duration::from_secs(3600)),
            max_replay_entries: raw.token_endpoint.max_replay_entries.unwrap_or(1_000_000),
        };
        if token_endpoint.max_assertion_lifetime < Duration::from_secs(10)
            || token_endpoint.max_assertion_lifetime > Duration::from_secs(24 * 3600)
        {
            self.diag.error(
                "token_endpoint.max_assertion_lifetime",
                "must be between 10s and 24h (e.g. 5m)",
            );
        }
        if token_endpoint.max_replay_entries < 1000 {
            self.diag
                .error("token_endpoint.max_replay_entries", "must be at least 1000");
        }
        let server = self.server(&raw.server);
        let limits = self.limits(&raw.limits);
        let store = self.store(raw.store.as_ref());
        let rate_limits = self.rate_limits(&raw.rate_limits, &clients, &routes);
        let quotas = self.quotas(&raw.quotas, &clients);
        let tracing = self.tracing(&raw.tracing);
        let authorization = raw.authorization.as_ref().and_then(|a| self.authorization(a));
        if authorization.is_none() && clients.iter().any(|c| c.grant_types.authorization_code) {
            self.diag.error(
                "authorization",
                "clients with redirect_uris need the authorization section (users_file and its settings)",
            );
        }

        if self.diag.has_errors() {
            return Err(self.diag.finish());
        }
        let file = self.diag.file().to_path_buf();
        let digest = self.sources.finalize();
        Ok(Config {
            hash: digest.to_hex()[..16].to_string(),
            file,
            listen: listen.expect("checked"),
            tls: tls.flatten(),
            admin_listen: admin_listen.expect("checked"),
            issuer: issuer.expect("checked"),
            audience: audience.expect("checked"),
            // a retired key is published as long as a token it signed may be presented
            keys: Arc::new(keys.expect("checked").publishing_retired_for(token_lifetime + leeway)),
            token_lifetime,
            leeway,
            clients,
            software_statements: software_statements.flatten(),
            upstreams,
            routes,
            bearer: BearerConfig {
                allow_query_token: raw.bearer.allow_query_token,
            },
            cache,
            registration,
            token_endpoint,
            server,
            limits,
            authorization,
            store,
            rate_limits,
            quotas,
            tracing,
            issuers,
        })
    }

    fn tracing(&mut self, raw: &crate::config::raw::RawTracing) -> TracingConfig {
        if let Some(endpoint) = &raw.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => self.diag.error(
                    "tracing.otlp_endpoint",
                    format!("`{endpoint}` is not an http(s) URL; expected e.g. http://collector:4318/v1/traces"),
                ),
            }
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.diag.error("tracing.sample_ratio", "must be between 0 and 1");
        }
        let service_name = raw.service_name.clone().unwrap_or_else(|| "oada-gateway".into());
        if service_name.trim().is_empty() {
            self.diag.error("tracing.service_name", "must not be empty");
        }
        TracingConfig {
            otlp_endpoint: raw.otlp_endpoint.clone(),
            service_name,
            sample_ratio,
            export_timeout: secs(raw.export_timeout, Duration::from_secs(10)),
        }
    }

    fn addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.diag.error(
                    key,
                    format!("`{text}` is not an address; expected IP:PORT such as 127.0.0.1:8080 or [::]:8080"),
                );
                None
            }
        }
    }

    fn tls(&mut self, raw: &RawTls) -> Option<TlsFiles> {
        let cert = self.read_file("tls.cert_file", &raw.cert_file);
        let key = self.read_file("tls.key_file", &raw.key_file);
        if let Some((path, bytes)) = &cert {
            if !String::from_utf8_lossy(bytes).contains("-----BEGIN CERTIFICATE-----") {
                self.diag
                    .error("tls.cert_file", format!("{} is not a PEM certificate", path.display()));
            }
        }
        if let Some((path, bytes)) = &key {
            if !String::from_utf8_lossy(bytes).contains("PRIVATE KEY-----") {
                self.diag
                    .error("tls.key_file", format!("{} is not a PEM private key", path.display()));
            }
        }
        let (cert_file, cert_pem) = cert?;
        let (key_file, key_pem) = key?;
        let mut digest = blake3::Hasher::new();
        digest.update(&cert_pem).update(&key_pem);
        Some(TlsFiles {
            cert_file,
            key_file,
            contents: *digest.finalize().as_bytes(),
        })
    }

    fn issuer(&mut self, text: &str) -> Option<Issuer> {
        const KEY: &str = "issuer";
        let url = match url::Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.diag
                    .error(KEY, format!("`{text}` is not an absolute URL ({e}); expected e.g. https://api.example.com"));
                return None;
            }
        };
        let host = match url.host() {
            Some(h) => h,
            None => {
                self.diag.error(KEY, "the issuer URL needs a host");
                return None;
            }
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) => {}
            "http" => {
                self.diag.error(
                    KEY,
                    "must use https (RFC 8414 §2); plain http is only accepted for loopback hosts such as 127.0.0.1",
                );
                return None;
            }
            other => {
                self.diag
                    .error(KEY, format!("scheme `{other}` is not allowed; expected https"));
                return None;
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.diag
                .error(KEY, "must not have a query or fragment (RFC 8414 §2)");
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.diag.error(KEY, "must not contain credentials");
            return None;
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let path_prefix = url.path().trim_end_matches('/').to_string();
        Some(Issuer { base, path_prefix })
    }

    fn signing_keys(&mut self, raw: &[RawSigningKey]) -> Option<KeyRing> {
        if raw.is_empty() {
            self.diag.error(
                "signing_keys",
                "at least one key is needed; create one with `oada-gateway keygen --alg ES256 --kid gw-1 --out keys/gw-1.pem`",
            );
            return None;
        }
        let any_active = raw.iter().any(|k| k.status.as_deref() == Some("active"));
        let mut loaded = Vec::new();
        let mut kids = HashSet::new();
        let mut active: Option<usize> = None;
        let mut actives = 0;
        for (i, k) in raw.iter().enumerate() {
            let key = format!("signing_keys[{i}]");
            if k.kid.trim().is_empty() {
                self.diag.error(format!("{key}.kid"), "must not be empty");
            } else if !kids.insert(k.kid.clone()) {
                self.diag
                    .error(format!("{key}.kid"), format!("`{}` is used by another key; kids must be unique", k.kid));
            }
            let lifecycle = self.key_lifecycle(&key, k, KeyStatus::omitted(i == 0, any_active));
            if let Some(KeyLifecycle { status: KeyStatus::Active, .. }) = lifecycle {
                actives += 1;
                match active {
                    Some(first) => self.diag.error(
                        format!("{key}.status"),
                        format!("signing_keys[{first}] is already `active`; exactly one key signs (make this one `next` or `retired`)"),
                    ),
                    None => active = Some(i),
                }
            }
            let Some(alg) = keys::parse_signing_alg(&k.alg) else {
                self.diag
                    .error(format!("{key}.alg"), format!("`{}` is not supported; expected RS256, ES256 or EdDSA", k.alg));
                continue;
            };
            let Some((path, pem)) = self.read_file(&format!("{key}.private_key_file"), &k.private_key_file) else {
                continue;
            };
            let created_at = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            match SigningKey::from_pem(&k.kid, alg, &pem) {
                Ok(sk) => {
                    if let Some(lifecycle) = lifecycle {
                        loaded.push(sk.with_lifecycle(KeyLifecycle { created_at, ..lifecycle }));
                    }
                }
                Err(e) => self.diag.error(
                    format!("{key}.private_key_file"),
                    format!("{}: {e}", path.display()),
                ),
            }
        }
        if active.is_none() && !self.diag.has_errors() {
            self.diag.error(
                "signing_keys",
                "no key is `status: active`; exactly one key signs (`oada-gateway keys rotate` moves next → active)",
            );
        }
        (loaded.len() == raw.len() && actives == 1).then(|| KeyRing::new(loaded))
    }

    /// `signing_keys[i].status` (`omitted`: what an omitted one means) and `.retired_at`.
    fn key_lifecycle(&mut self, key: &str, raw: &RawSigningKey, omitted: KeyStatus) -> Option<KeyLifecycle> {
        let status = match raw.status.as_deref() {
            None => omitted,
            Some(name) => match KeyStatus::parse(name) {
                Some(status) => status,
                None => {
                    self.diag
                        .error(format!("{key}.status"), format!("`{name}` is not a key status; expected next, active or retired"));
                    return None;
                }
            },
        };
        let retired_at = match (status, raw.retired_at.as_deref()) {
            (KeyStatus::Retired, Some(text)) => match humantime::parse_rfc3339_weak(text.trim()) {
                Ok(at) => Some(at),
                Err(e) => {
                    self.diag.error(
                        format!("{key}.retired_at"),
                        format!("`{text}` is not an RFC 3339 time ({e}); e.g. 2026-11-24T10:00:00Z"),
                    );
                    return None;
                }
            },
            (KeyStatus::Retired, None) => {
                self.diag.error(
                    format!("{key}.retired_at"),
                    "a retired key needs the time it stopped signing (RFC 3339, e.g. 2026-11-24T10:00:00Z), which decides how long /jwks still publishes it; `oada-gateway keys rotate` writes it",
                );
                return None;
            }
            (_, Some(_)) => {
                self.diag
                    .error(format!("{key}.retired_at"), "only a `status: retired` key has a retirement time");
                return None;
            }
            (_, None) => None,
        };
        Some(KeyLifecycle {
            status,
            retired_at,
            created_at: None,
        })
    }

    fn scopes(&mut self, key: &str, list: &[String]) -> ScopeSet {
        let mut ok = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match Scope::parse(s) {
                Ok(_) => ok.push(s.as_str()),
                Err(e) => self.diag.error(format!("{key}[{i}]"), e.to_string()),
            }
        }
        ScopeSet::from_iter_str(ok).unwrap_or_default()
    }

    fn software_statements(&mut self, raw: &RawSoftwareStatements) -> Option<SoftwareStatementPolicy> {
        const KEY: &str = "software_statements";
        let mut trusted = Vec::new();
        for (i, t) in raw.trusted.iter().enumerate() {
            let key = format!("{KEY}.trusted[{i}]");
            let given = [t.jwks_file.is_some(), t.jku.is_some(), t.trusted_list.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                self.diag.error(
                    key.clone(),
                    "give exactly one of jwks_file, jku or trusted_list",
                );
                continue;
            }
            if let Some(file) = &t.jwks_file {
                let Some((path, bytes)) = self.read_file(&format!("{key}.jwks_file"), file) else {
                    continue;
                };
                match serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|v| PublicJwkSet::from_json(&v).map_err(|e| e.to_string()))
                {
                    Ok(set) => trusted.push(TrustSource::Jwks(set)),
                    Err(e) => self
                        .diag
                        .error_in(&path, "", format!("not a JWK set: {e}")),
                }
            } else if let Some(url) = &t.jku {
                if let Some(u) = self.fetch_url(&format!("{key}.jku"), url) {
                    trusted.push(TrustSource::Jku(u));
                }
            } else if let Some(list) = &t.trusted_list {
                if list.starts_with("http://") || list.starts_with("https://") {
                    if let Some(u) = self.fetch_url(&format!("{key}.trusted_list"), list) {
                        trusted.push(TrustSource::TrustedListUrl(u));
                    }
                } else {
                    self.trusted_list_file(&format!("{key}.trusted_list"), list, &mut trusted);
                }
            }
        }
        let scopes = self.scopes(&format!("{KEY}.scopes"), &raw.scopes);
        let untrusted_scopes = self.scopes(&format!("{KEY}.untrusted_scopes"), &raw.untrusted_scopes);
        if trusted.is_empty() && !raw.allow_untrusted && raw.trusted.is_empty() {
            self.diag.error(
                format!("{KEY}.trusted"),
                "list at least one trusted signer (jwks_file, jku or trusted_list), or remove software_statements",
            );
        }
        if !raw.trusted.is_empty() && raw.scopes.is_empty() {
            self.diag.error(
                format!("{KEY}.scopes"),
                "list what clients with a trusted software statement may be granted",
            );
        }
        if raw.allow_untrusted && raw.untrusted_scopes.is_empty() {
            self.diag.error(
                format!("{KEY}.untrusted_scopes"),
                "allow_untrusted needs the scopes untrusted clients may be granted",
            );
        }
        Some(SoftwareStatementPolicy {
            trusted,
            scopes,
            allow_untrusted: raw.allow_untrusted,
            untrusted_scopes,
        })
    }

    /// An OADA trusted list in a file: v1 is an array of jku URLs, v2 `{version: "2", jkus, jwks}`.
    fn trusted_list_file(&mut self, key: &str, file: &str, out: &mut Vec<TrustSource>) {
        let Some((path, bytes)) = self.read_file(key, file) else {
            return;
        };
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.diag.error_in(&path, "", format!("not JSON: {e}"));
                return;
            }
        };
        match crate::oauth::software_statement::parse_trusted_list(&value) {
            Ok(list) => {
                for jku in list.jkus {
                    match remote::validate_fetch_url(&jku) {
                        Ok(u) => out.push(TrustSource::Jku(u)),
                        Err(e) => self.diag.error_in(&path, "jkus", e),
                    }
                }
                if let Some(set) = list.jwks {
                    out.push(TrustSource::Jwks(set));
                }
            }
            Err(e) => self.diag.error_in(&path, "", e),
        }
    }

    fn fetch_url(&mut self, key: &str, url: &str) -> Option<String> {
        match remote::validate_fetch_url(url) {
            Ok(u) => Some(u),
            Err(e) => {
                self.diag.error(key, e);
                None
            }
        }
    }

    fn upstreams(&mut self, raw: &std::collections::BTreeMap<String, RawUpstream>) -> Vec<UpstreamConfig> {
        if raw.is_empty() {
            self.diag
                .error("upstreams", "define at least one upstream, e.g. weather: {servers: [127.0.0.1:8081]}");
        }
        let mut out = Vec::new();
        for (name, u) in raw {
            let key = format!("upstreams.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.diag
                    .error(key.clone(), "upstream names use letters, digits, - and _");
            }
            if u.servers.is_empty() {
                self.diag
                    .error(format!("{key}.servers"), "list at least one HOST:PORT");
            }
            let mut servers = Vec::new();
            for (i, s) in u.servers.iter().enumerate() {
                match s.to_socket_addrs().map(|mut it| it.next()) {
                    Ok(Some(addr)) => {
                        if servers.contains(&addr) {
                            self.diag
                                .error(format!("{key}.servers[{i}]"), format!("`{s}` is listed twice"));
                        }
                        servers.push(addr);
                    }
                    _ => self.diag.error(
                        format!("{key}.servers[{i}]"),
                        format!("`{s}` is not a reachable HOST:PORT (it did not parse or resolve)"),
                    ),
                }
            }
            let health_check = self.health_check(&key, u.health_check.as_ref());
            let connect_timeout = secs(u.connect_timeout, Duration::from_secs(2));
            let read_timeout = secs(u.read_timeout, Duration::from_secs(30));
            let write_timeout = secs(u.write_timeout, Duration::from_secs(30));
            let idle_timeout = secs(u.idle_timeout, Duration::from_secs(60));
            for (field, d) in [
                ("connect_timeout", connect_timeout),
                ("read_timeout", read_timeout),
                ("write_timeout", write_timeout),
            ] {
                if d.is_zero() {
                    self.diag
                        .error(format!("{key}.{field}"), "must be greater than 0 (e.g. 2s)");
                }
            }
            out.push(UpstreamConfig {
                name: name.clone(),
                servers,
                health_check,
                connect_timeout,
                read_timeout,
                write_timeout,
                idle_timeout,
            });
        }
        out
    }

    fn health_check(&mut self, upstream_key: &str, raw: Option<&RawHealthCheck>) -> HealthCheckConfig {
        let key = format!("{upstream_key}.health_check");
        let mut hc = HealthCheckConfig {
            kind: HealthCheckKind::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        };
        let Some(raw) = raw else {
            return hc;
        };
        hc.kind = match (raw.kind.as_deref(), &raw.path) {
            (None | Some("tcp"), None) => HealthCheckKind::Tcp,
            (None | Some("http"), Some(path)) => {
                if !path.starts_with('/') {
                    self.diag
                        .error(format!("{key}.path"), "must start with /, e.g. /health");
                }
                HealthCheckKind::Http { path: path.clone() }
            }
            (Some("http"), None) => {
                self.diag
                    .error(format!("{key}.path"), "an http health check needs a path, e.g. /health");
                HealthCheckKind::Tcp
            }
            (Some("none"), None) => HealthCheckKind::None,
            (Some("tcp" | "none"), Some(_)) => {
                self.diag
                    .error(format!("{key}.path"), "path only applies to type: http");
                HealthCheckKind::Tcp
            }
            (Some(other), _) => {
                self.diag
                    .error(format!("{key}.type"), format!("`{other}` is not a health check type; expected tcp, http or none"));
                HealthCheckKind::Tcp
            }
        };
        hc.interval = secs(raw.interval, hc.interval);
        hc.timeout = secs(raw.timeout, hc.timeout);
        if hc.interval < Duration::from_millis(100) {
            self.diag
                .error(format!("{key}.interval"), "must be at least 100ms (e.g. 5s)");
        }
        if hc.timeout.is_zero() {
            self.diag
                .error(format!("{key}.timeout"), "must be greater than 0 (e.g. 1s)");
        }
        hc.healthy_threshold = raw.healthy_threshold.unwrap_or(1);
        hc.unhealthy_threshold = raw.unhealthy_threshold.unwrap_or(1);
        for (field, v) in [
            ("healthy_threshold", hc.healthy_threshold),
            ("unhealthy_threshold", hc.unhealthy_threshold),
        ] {
            if v == 0 || v > 100 {
                self.diag
                    .error(format!("{key}.{field}"), "must be between 1 and 100");
            }
        }
        hc
    }

    fn routes(
        &mut self,
        raw: &[RawRoute],
        upstreams: &[UpstreamConfig],
        issuer: Option<&Issuer>,
        external: &[ExternalIssuerConfig],
    ) -> RouteTable {
        let mut routes: Vec<Route> = Vec::new();
        let hosted: Vec<String> = issuer
            .map(|i| paths::hosted_paths(i))
            .unwrap_or_default();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("routes[{i}]");
            let Some(prefix) = self.route_path(&format!("{key}.path"), &r.path) else {
                continue;
            };
            if hosted.iter().any(|h| h == &prefix) {
                self.diag.error(
                    format!("{key}.path"),
                    format!("`{prefix}` is served by the gateway's authorization server; choose another path"),
                );
            }
            let methods = match &r.methods {
                None => None,
                Some(list) if list.is_empty() => {
                    self.diag
                        .error(format!("{key}.methods"), "list at least one method, or omit the key for all methods");
                    None
                }
                Some(list) => {
                    let mut ms = Vec::new();
                    for (j, m) in list.iter().enumerate() {
                        let valid = !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase());
                        match http::Method::from_bytes(m.as_bytes()) {
                            Ok(method) if valid => ms.push(method),
                            _ => self.diag.error(
                                format!("{key}.methods[{j}]"),
                                format!("`{m}` is not an HTTP method; expected e.g. GET, POST, PUT, DELETE (upper case)"),
                            ),
                        }
                    }
                    Some(ms)
                }
            };
            let auth = match r.auth.as_deref() {
                None | Some("bearer") => {
                    match (&r.scopes, &r.scope_type) {
                        (Some(_), Some(_)) => {
                            self.diag.error(
                                format!("{key}.scope_type"),
                                "give either scopes or scope_type, not both",
                            );
                            RouteAuth::Bearer(ScopeRequirement::All(Vec::new()))
                        }
                        (_, Some(kind)) => {
                            if Scope::new(kind, Perm::Read).is_err() {
                                self.diag.error(
                                    format!("{key}.scope_type"),
                                    format!("`{kind}` is not a scope type (e.g. weather.observations)"),
                                );
                            }
                            RouteAuth::Bearer(ScopeRequirement::ByMethod { kind: kind.clone() })
                        }
                        (scopes, None) => {
                            let mut parsed = Vec::new();
                            for (j, s) in scopes.iter().flatten().enumerate() {
                                match Scope::parse(s) {
                                    Ok(sc) => parsed.push(sc),
                                    Err(e) => self.diag.error(format!("{key}.scopes[{j}]"), e.to_string()),
                                }
                            }
                            RouteAuth::Bearer(ScopeRequirement::All(parsed))
                        }
                    }
                }
                Some("none") => {
                    if r.scopes.is_some() || r.scope_type.is_some() {
                        self.diag.error(
                            format!("{key}.auth"),
                            "a route with auth: none cannot require scopes; remove scopes/scope_type or use auth: bearer",
                        );
                    }
                    RouteAuth::None
                }
                Some(other) => {
                    self.diag
                        .error(format!("{key}.auth"), format!("`{other}` is not an auth mode; expected bearer or none"));
                    RouteAuth::None
                }
            };
            let Some(upstream) = upstreams.iter().position(|u| u.name == r.upstream) else {
                let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                self.diag.error(
                    format!("{key}.upstream"),
                    format!("unknown upstream `{}`; defined upstreams: {}", r.upstream, known.join(", ")),
                );
                continue;
            };
            let issuers = r.issuers.as_ref().map(|list| {
                if list.is_empty() {
                    self.diag.error(format!("{key}.issuers"), "list at least one issuer, or omit the key for every issuer");
                }
                if matches!(auth, RouteAuth::None) {
                    self.diag.error(format!("{key}.issuers"), "a route with auth: none checks no token");
                }
                for (j, iss) in list.iter().enumerate() {
                    let own = issuer.is_some_and(|i| i.as_str() == iss);
                    if !own && !external.iter().any(|e| e.issuer == *iss) {
                        let mut known: Vec<&str> = issuer.map(|i| i.as_str()).into_iter().collect();
                        known.extend(external.iter().map(|e| e.issuer.as_str()));
                        self.diag.error(
                            format!("{key}.issuers[{j}]"),
                            format!("`{iss}` is neither the gateway's issuer nor in issuers[]; known: {}", known.join(", ")),
                        );
                    }
                }
                list.iter().map(|i| i.clone().into_boxed_str()).collect()
            });
            let route = Route {
                id: 0,
                issuers,
                name: r.name.clone().unwrap_or_else(|| prefix.clone()),
                prefix,
                methods,
                auth,
                upstream,
                forward_authorization: r.forward_authorization,
            };
            // two routes on the same prefix must not both take a method
            for other in routes.iter().filter(|o| o.prefix == route.prefix) {
                let overlap = match (&other.methods, &route.methods) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                };
                if overlap {
                    self.diag.error(
                        format!("{key}.methods"),
                        format!("another route already serves {} with these methods; give each route its own methods", route.prefix),
                    );
                }
            }
            if routes.iter().any(|o| o.name == route.name && o.prefix != route.prefix) {
                self.diag
                    .error(format!("{key}.name"), format!("`{}` names another route", route.name));
            }
            routes.push(route);
        }
        RouteTable::new(routes)
    }

    fn route_path(&mut self, key: &str, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            self.diag
                .error(key, format!("`{path}` must start with /, e.g. /observations"));
            return None;
        }
        if path.contains(['?', '#', '%', '\\', ' ']) {
            self.diag.error(
                key,
                format!("`{path}` must be a plain path prefix without query, fragment, escapes or spaces"),
            );
            return None;
        }
        if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains("//") {
            self.diag
                .error(key, format!("`{path}` must not contain empty, . or .. segments"));
            return None;
        }
        let trimmed = path.trim_end_matches('/');
        Some(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() })
    }

    fn cache(&mut self, raw: &RawCache) -> CacheConfig {
        let c = CacheConfig {
            max_entries: raw.max_entries.unwrap_or(100_000),
            negative_ttl: secs(raw.negative_ttl, Duration::from_secs(10)),
            negative_max_entries: raw.negative_max_entries.unwrap_or(10_000),
        };
        if c.max_entries == 0 {
            self.diag.error("cache.max_entries", "must be at least 1");
        }
        if c.negative_ttl > Duration::from_secs(3600) {
            self.diag
                .error("cache.negative_ttl", "must be at most 1h (e.g. 10s)");
        }
        c
    }
}

/// Reads `jwks` / `jwks_uri` from a registration document. Errors are `(member, message)`.
pub(crate) fn parse_client_keys(
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(ClientKeys, Vec<String>), (&'static str, String)> {
    match (metadata.get("jwks"), metadata.get("jwks_uri")) {
        (Some(_), Some(_)) => Err((
            "jwks",
            "give either jwks or jwks_uri, not both (RFC 7591 §2)".to_string(),
        )),
        (Some(jwks), None) => {
            let set = PublicJwkSet::from_json(jwks).map_err(|e| ("jwks", e.to_string()))?;
            let thumbprints = set.thumbprints();
            Ok((ClientKeys::Jwks(set), thumbprints))
        }
        (None, Some(uri)) => {
            let uri = uri
                .as_str()
                .ok_or(("jwks_uri", "must be a string URL".to_string()))?;
            let uri = remote::validate_fetch_url(uri).map_err(|e| ("jwks_uri", e))?;
            Ok((ClientKeys::JwksUri(uri), Vec::new()))
        }
        (None, None) => Err((
            "jwks",
            "the document has no public keys; it needs jwks (a JWK set) or jwks_uri".to_string(),
        )),
    }
}
