//! Discovery documents: `/.well-known/oada-configuration` (OADA) and
//! `/.well-known/oauth-authorization-server` (RFC 8414). Every URL derives from `issuer`; both
//! documents are built once at start-up.

use super::paths;
use crate::config::Config;
use crate::keys::jwk::{algorithm_name, ASSERTION_ALGORITHMS};
use crate::reply::Reply;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub use crate::config::{GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN};

pub struct Documents {
    oada: Reply,
    oauth: Reply,
}

/// Client authentication methods on offer: private_key_jwt always, secrets when a client has
/// one (client_secret_jwt when one comes from the environment), none with the user-delegated flow.
pub fn auth_methods(config: &Config) -> Vec<&'static str> {
    let mut methods = vec!["private_key_jwt"];
    if config.clients.iter().any(|c| c.secret.is_some()) {
        methods.push("client_secret_basic");
        methods.push("client_secret_post");
    }
    if config
        .clients
        .iter()
        .any(|c| matches!(c.secret, Some(crate::config::ClientSecret::Plain { .. })))
    {
        methods.push("client_secret_jwt");
    }
    if config.authorization.is_some() {
        methods.push("none");
    }
    methods
}

impl Documents {
    pub fn new(config: &Config) -> Self {
        let issuer = &config.issuer;
        let methods = auth_methods(config);
        let mut algs: Vec<&str> = ASSERTION_ALGORITHMS.iter().map(|a| algorithm_name(*a)).collect();
        if methods.contains(&"client_secret_jwt") {
            algs.push("HS256");
        }
        let mut scopes: BTreeSet<String> = BTreeSet::new();
        for client in &config.clients {
            scopes.extend(client.scopes.iter().map(|s| s.to_string()));
        }
        if let Some(d) = config.authorization.as_ref().and_then(|a| a.client_discovery.as_ref()) {
            scopes.extend(d.scopes.iter().map(|s| s.to_string()));
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
        let mut grants = vec![GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER];
        if let Some(authorization) = &config.authorization {
            grants.push(GRANT_AUTHORIZATION_CODE);
            grants.push(GRANT_REFRESH_TOKEN);
            common.insert("authorization_endpoint".into(), json!(issuer.url(paths::AUTHORIZATION)));
            common.insert("response_types_supported".into(), json!(["code"]));
            common.insert("response_modes_supported".into(), json!(["query"]));
            common.insert("code_challenge_methods_supported".into(), json!(["S256"]));
            common.insert("authorization_response_iss_parameter_supported".into(), json!(true));
            if let Some(d) = &authorization.client_discovery {
                common.insert("client_discovery_trusted_providers".into(), json!(d.trusted_providers));
            }
        } else {
            // No authorization endpoint: no response types (RFC 8414 §2 asks for the member).
            common.insert("response_types_supported".into(), json!([]));
        }
        common.insert("grant_types_supported".into(), json!(grants));
        common.insert("token_endpoint_auth_methods_supported".into(), json!(methods));
        common.insert("token_endpoint_auth_signing_alg_values_supported".into(), json!(algs));
        common.insert("introspection_endpoint_auth_methods_supported".into(), json!(methods));
        common.insert("revocation_endpoint_auth_methods_supported".into(), json!(methods));

        let mut oada = common.clone();
        oada.insert("oada_base_uri".into(), json!(issuer.as_str()));

        let mut oauth = Map::new();
        oauth.insert("issuer".into(), json!(issuer.as_str()));
        oauth.extend(common);

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
