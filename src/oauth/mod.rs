//! The authorization server the gateway hosts: discovery, JWKS, registration, token,
//! introspection and revocation. One module per endpoint; handlers take a [`HostedRequest`] and
//! return a [`Reply`], so they know nothing of Pingora.

pub mod discovery;
pub mod jwks;
pub mod paths;
pub mod software_statement;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::reply::Reply;
use bytes::Bytes;
use http::{HeaderMap, Method};
use std::sync::Arc;

/// Largest request body accepted by the hosted endpoints (RFC 7591 registrations included).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The endpoints the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    OadaConfiguration,
    OAuthMetadata,
    Jwks,
}

impl Endpoint {
    /// The `route` label of hosted endpoints in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::OadaConfiguration => "oauth:oada-configuration",
            Endpoint::OAuthMetadata => "oauth:metadata",
            Endpoint::Jwks => "oauth:jwks",
        }
    }

    /// The method the endpoint takes.
    pub fn method(self) -> Method {
        match self {
            Endpoint::OadaConfiguration | Endpoint::OAuthMetadata | Endpoint::Jwks => Method::GET,
        }
    }

    /// Does the endpoint read a request body?
    pub fn takes_body(self) -> bool {
        self.method() == Method::POST
    }
}

/// A request to a hosted endpoint, body already read (at most [`MAX_BODY_BYTES`]).
pub struct HostedRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// Unix seconds.
    pub now: u64,
}

pub struct AuthorizationServer {
    endpoints: Vec<(String, Endpoint)>,
    discovery: discovery::Documents,
    keys: Arc<KeyRing>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl AuthorizationServer {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let issuer = &config.issuer;
        let endpoints = vec![
            (paths::OADA_CONFIGURATION.to_string(), Endpoint::OadaConfiguration),
            (
                format!("{}{}", paths::OAUTH_METADATA, issuer.path_prefix()),
                Endpoint::OAuthMetadata,
            ),
            (issuer.path(paths::JWKS), Endpoint::Jwks),
        ];
        AuthorizationServer {
            endpoints,
            discovery: discovery::Documents::new(config),
            keys: config.keys.clone(),
            metrics,
        }
    }

    /// The endpoint served at `path`, if any.
    pub fn endpoint_for(&self, path: &str) -> Option<Endpoint> {
        self.endpoints
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, e)| *e)
    }

    pub async fn handle(&self, endpoint: Endpoint, request: &HostedRequest<'_>) -> Reply {
        let allowed = endpoint.method();
        if *request.method != allowed && !(allowed == Method::GET && *request.method == Method::HEAD) {
            return Reply::error(405, "invalid_request", format!("use {allowed} on this endpoint"))
                .with_header("Allow", allowed.as_str());
        }
        match endpoint {
            Endpoint::OadaConfiguration => self.discovery.oada_configuration(),
            Endpoint::OAuthMetadata => self.discovery.oauth_metadata(),
            Endpoint::Jwks => jwks::reply(&self.keys),
        }
    }
}
