//! The authorization server the gateway hosts: discovery, JWKS, registration, token,
//! introspection and revocation. One module per endpoint and per grant; one client
//! authentication step shared by the endpoints that need it. Handlers take a [`HostedRequest`]
//! and return a [`Reply`], so they know nothing of Pingora.

pub mod assertion;
pub mod client_auth;
pub mod clients;
pub mod discovery;
pub mod error;
pub mod form;
pub mod grants;
pub mod introspect;
pub mod jwks;
pub mod jws;
pub mod partner_id;
pub mod paths;
pub mod register;
pub mod revoke;
pub mod software_statement;
pub mod throttle;
pub mod token;

use crate::auth::verifier::TokenVerifier;
use crate::config::Config;
use crate::keys::remote::KeyFetcher;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::store::Store;
use crate::token::TokenIssuer;
use assertion::AssertionPolicy;
use bytes::Bytes;
use client_auth::ClientAuthenticator;
use clients::ClientRegistry;
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
    Register,
    Token,
    Introspect,
    Revoke,
}

impl Endpoint {
    /// The `route` label of hosted endpoints in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::OadaConfiguration => "oauth:oada-configuration",
            Endpoint::OAuthMetadata => "oauth:metadata",
            Endpoint::Jwks => "oauth:jwks",
            Endpoint::Register => "oauth:register",
            Endpoint::Token => "oauth:token",
            Endpoint::Introspect => "oauth:introspect",
            Endpoint::Revoke => "oauth:revoke",
        }
    }

    /// The method the endpoint takes.
    pub fn method(self) -> Method {
        match self {
            Endpoint::OadaConfiguration | Endpoint::OAuthMetadata | Endpoint::Jwks => Method::GET,
            Endpoint::Register | Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => Method::POST,
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
    /// The client's address (per-address limits).
    pub client_ip: Option<std::net::IpAddr>,
}

pub struct AuthorizationServer {
    endpoints: Vec<(String, Endpoint)>,
    discovery: discovery::Documents,
    keys: Arc<KeyRing>,
    registrar: register::Registrar,
    token: token::TokenEndpoint,
    introspection: introspect::Introspection,
    revocation: revoke::Revocation,
    throttle: throttle::EndpointThrottle,
}

impl AuthorizationServer {
    pub fn new(config: Arc<Config>, verifier: Arc<TokenVerifier>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let issuer = &config.issuer;
        let realm = issuer.as_str().to_string();
        let mut endpoints = vec![
            (paths::OADA_CONFIGURATION.to_string(), Endpoint::OadaConfiguration),
            (format!("{}{}", paths::OAUTH_METADATA, issuer.path_prefix()), Endpoint::OAuthMetadata),
        ];
        for (path, endpoint) in [
            (paths::JWKS, Endpoint::Jwks),
            (paths::REGISTER, Endpoint::Register),
            (paths::TOKEN, Endpoint::Token),
            (paths::INTROSPECT, Endpoint::Introspect),
            (paths::REVOKE, Endpoint::Revoke),
        ] {
            endpoints.push((issuer.path(path), endpoint));
        }
        let fetcher = Arc::new(KeyFetcher::new());
        let registry = Arc::new(ClientRegistry::new(&config, store.clone(), fetcher.clone()));
        let policy = AssertionPolicy {
            audiences: vec![issuer.url(paths::TOKEN), issuer.as_str().to_string()],
            leeway: config.leeway.as_secs(),
            max_lifetime: config.token_endpoint.max_assertion_lifetime.as_secs(),
        };
        let authn = Arc::new(ClientAuthenticator::new(registry.clone(), store.clone(), policy));
        let statements = config.software_statements.clone().map(|policy| {
            software_statement::StatementVerifier::new(policy, fetcher.clone(), config.leeway.as_secs())
        });
        let issuer_of_tokens = TokenIssuer::new(config.keys.clone(), issuer.as_str(), &config.audience, config.token_lifetime);
        AuthorizationServer {
            endpoints,
            discovery: discovery::Documents::new(&config),
            keys: config.keys.clone(),
            registrar: register::Registrar::new(config.clone(), statements, registry.clone(), store, metrics.clone()),
            token: token::TokenEndpoint::new(authn.clone(), issuer_of_tokens, metrics.clone(), realm.clone()),
            introspection: introspect::Introspection::new(authn.clone(), verifier.clone(), realm.clone()),
            revocation: revoke::Revocation::new(authn, verifier, metrics.clone(), realm),
            throttle: throttle::EndpointThrottle::new(&config.limits, metrics),
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
        if let Some(refusal) = self.throttle.check(endpoint, request.client_ip) {
            return refusal;
        }
        match endpoint {
            Endpoint::OadaConfiguration => self.discovery.oada_configuration(),
            Endpoint::OAuthMetadata => self.discovery.oauth_metadata(),
            Endpoint::Jwks => jwks::reply(&self.keys),
            Endpoint::Register => self.registrar.register(request).await,
            Endpoint::Token => self.token.token(request).await,
            Endpoint::Introspect => self.introspection.introspect(request).await,
            Endpoint::Revoke => self.revocation.revoke(request).await,
        }
    }
}
