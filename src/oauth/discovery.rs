//! Discovery documents: `/.well-known/oada-configuration` (OADA) and
//! `/.well-known/oauth-authorization-server` (RFC 8414). Every URL derives from `issuer`; both
//! documents are built once at start-up.

use super::paths;
use crate::config::Config;
use crate::keys::jwk::{algorithm_name, ASSERTION_ALGORITHMS};
use crate::reply::Reply;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub struct Documents {
    oada: Reply,
    oauth: Reply,
}

/// Client authentication methods on offer: private_key_jwt always, secrets when a client has one.
pub fn auth_methods(config: &Config) -> Vec<&'static str> {
    let mut methods = vec!["private_key_jwt"];
    if config.clients.iter().any(|c| c.secret.is_some()) {
        methods.push("client_secret_basic");
        methods.push("client_secret_post");
    }
    methods
}

impl Documents {
    pub fn new(config: &Config) -> Self {
        let issuer = &config.issuer;
        let methods = auth_methods(config);
        let algs: Vec<&str> = ASSERTION_ALGORITHMS.iter().map(|a| algorithm_name(*a)).collect();
        let mut scopes: BTreeSet<String> = BTreeSet::new();
        for client in &config.clients {
            scopes.extend(client.scopes.iter().map(|s| s.to_string()));
        }
        if let Some(statements) = &config.software_statements {
            scopes.extend(statements.scopes.iter().map(|s| s.to_string()));
            scopes.extend(statements.untrusted_scopes.iter().map(|s| s.to_string()));
        }
        let mut common = Map::new();
        common.insert("token_endpoint".into(), json!(issuer.url(paths::TOKEN)));
        common.insert("registration_endpoint".into(), json!(issuer.url(paths::REGISTER)));
        common.insert("jwks_uri".into(), json!(issuer.url(paths::JWKS)));
        common.insert("introspection_endpoint".into(), json!(issuer.url(paths::INTROSPECT)));
        common.insert("revocation_endpoint".into(), json!(issuer.url(paths::REVOKE)));
        common.insert("scopes_supported".into(), json!(scopes));
        common.insert(
            "grant_types_supported".into(),
            json!([GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER]),
        );
        common.insert("token_endpoint_auth_methods_supported".into(), json!(methods));
        common.insert("token_endpoint_auth_signing_alg_values_supported".into(), json!(algs));
        common.insert("introspection_endpoint_auth_methods_supported".into(), json!(methods));
        common.insert("revocation_endpoint_auth_methods_supported".into(), json!(methods));

        let mut oada = common.clone();
        oada.insert("oada_base_uri".into(), json!(issuer.as_str()));

        let mut oauth = Map::new();
        oauth.insert("issuer".into(), json!(issuer.as_str()));
        oauth.extend(common);
        // No authorization endpoint yet: no response types (RFC 8414 §2 asks for the member).
        oauth.insert("response_types_supported".into(), json!([]));

        let cached = |doc: Map<String, Value>| {
            Reply::json(200, &Value::Object(doc)).with_header("Cache-Control", "public, max-age=300")
        };
        Documents {
            oada: cached(oada),
            oauth: cached(oauth),
        }
    }

    pub fn oada_configuration(&self) -> Reply {
        self.oada.clone()
    }

    pub fn oauth_metadata(&self) -> Reply {
        self.oauth.clone()
    }
}
