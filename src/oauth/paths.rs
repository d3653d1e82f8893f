//! Where the hosted authorization-server endpoints live, relative to the issuer's path.

use crate::config::Issuer;

pub const TOKEN: &str = "/token";
pub const REGISTER: &str = "/register";
pub const JWKS: &str = "/jwks";
pub const INTROSPECT: &str = "/introspect";
pub const REVOKE: &str = "/revoke";
pub const AUTHORIZATION: &str = "/authorization";
pub const LOGIN: &str = "/login";
pub const CONSENT: &str = "/consent";
/// OADA discovery document; always at the root of the host.
pub const OADA_CONFIGURATION: &str = "/.well-known/oada-configuration";
/// RFC 8414 metadata; for an issuer with a path, the path follows this suffix (RFC 8414 §3).
pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";

/// Every request path the gateway answers itself for `issuer`.
pub fn hosted_paths(issuer: &Issuer) -> Vec<String> {
    let mut paths: Vec<String> = [TOKEN, REGISTER, JWKS, INTROSPECT, REVOKE, AUTHORIZATION, LOGIN, CONSENT]
        .iter()
        .map(|p| issuer.path(p))
        .collect();
    paths.push(OADA_CONFIGURATION.to_string());
    paths.push(format!("{OAUTH_METADATA}{}", issuer.path_prefix()));
    paths
}
