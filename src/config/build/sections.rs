//! Reads the raw file format section by section, and list sections item by item, so that one
//! mistake does not hide the next: serde stops at the first error of whatever it deserializes.

use crate::config::raw::RawConfig;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// Every top-level key the file format knows.
const KNOWN: &[&str] = &[
    "listen",
    "tls",
    "admin_listen",
    "issuer",
    "audience",
    "signing_keys",
    "token_lifetime",
    "leeway",
    "clients",
    "software_statements",
    "upstreams",
    "routes",
    "bearer",
    "cache",
    "registration",
    "token_endpoint",
    "server",
    "limits",
    "authorization",
    "store",
    "rate_limits",
    "quotas",
    "tracing",
    "issuers",
];

struct Reader<'a> {
    map: Mapping,
    errors: &'a mut Vec<(String, String)>,
    failed: &'a mut Vec<String>,
}

fn error_key(prefix: &str, path: &str) -> String {
    match path {
        "." | "" => prefix.to_string(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    }
}

impl Reader<'_> {
    fn fail(&mut self, key: String, message: String) {
        self.failed.push(key.clone());
        self.errors.push((key, message));
    }

    fn value<T: DeserializeOwned>(&mut self, prefix: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let key = error_key(prefix, &e.path().to_string());
                self.fail(key, e.into_inner().to_string());
                None
            }
        }
    }

    /// An optional section; its default when absent or broken.
    fn optional<T: DeserializeOwned + Default>(&mut self, key: &str) -> T {
        match self.map.remove(key) {
            None | Some(Value::Null) => T::default(),
            Some(v) => self.value(key, v).unwrap_or_default(),
        }
    }

    /// A required section; its default when broken, with an error when missing.
    fn required<T: DeserializeOwned + Default>(&mut self, key: &str) -> T {
        match self.map.remove(key) {
            None | Some(Value::Null) => {
                self.fail(key.to_string(), format!("missing field `{key}`"));
                T::default()
            }
            Some(v) => self.value(key, v).unwrap_or_default(),
        }
    }

    /// A list section, item by item. Any broken item makes the whole list count as failed (its
    /// validation would name the wrong indexes), but every item's own errors are reported.
    fn list<T: DeserializeOwned>(&mut self, key: &str, required: bool) -> Vec<T> {
        let items = match self.map.remove(key) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(key.to_string(), format!("missing field `{key}`"));
                }
                return Vec::new();
            }
            Some(Value::Sequence(items)) => items,
            Some(_) => {
                self.fail(key.to_string(), "expected a list".into());
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut broken = false;
        for (i, item) in items.into_iter().enumerate() {
            match self.value(&format!("{key}[{i}]"), item) {
                Some(v) => out.push(v),
                None => broken = true,
            }
        }
        if broken {
            Vec::new()
        } else {
            out
        }
    }
}

/// The raw config, with every error found on the way in `errors` and the keys of sections that did
/// not parse in `failed`. `None` only when the file is not a mapping at all.
pub(super) fn parse(tree: Value, errors: &mut Vec<(String, String)>, failed: &mut Vec<String>) -> Option<RawConfig> {
    let Value::Mapping(map) = tree else {
        errors.push((String::new(), "expected a mapping of settings (key: value) at the top of the file".into()));
        return None;
    };
    for key in map.keys() {
        match key.as_str() {
            Some(k) if KNOWN.contains(&k) => {}
            Some(k) => {
                failed.push(k.to_string());
                errors.push((
                    k.to_string(),
                    format!("unknown field `{k}`, expected one of {}", KNOWN.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
                ));
            }
            None => errors.push((String::new(), "top-level keys must be strings".into())),
        }
    }
    let mut r = Reader { map, errors, failed };
    Some(RawConfig {
        listen: r.required("listen"),
        tls: r.optional("tls"),
        admin_listen: r.required("admin_listen"),
        issuer: r.required("issuer"),
        audience: r.optional("audience"),
        signing_keys: r.list("signing_keys", true),
        token_lifetime: r.optional("token_lifetime"),
        leeway: r.optional("leeway"),
        clients: r.list("clients", false),
        software_statements: r.optional("software_statements"),
        upstreams: r.required("upstreams"),
        routes: r.list("routes", true),
        bearer: r.optional("bearer"),
        cache: r.optional("cache"),
        registration: r.optional("registration"),
        token_endpoint: r.optional("token_endpoint"),
        server: r.optional("server"),
        limits: r.optional("limits"),
        authorization: r.optional("authorization"),
        store: r.optional("store"),
        rate_limits: r.list("rate_limits", false),
        quotas: r.list("quotas", false),
        tracing: r.optional("tracing"),
        issuers: r.list("issuers", false),
    })
}
