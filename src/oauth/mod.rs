//! The authorization server the gateway hosts: discovery, JWKS, registration, token,
//! introspection and revocation. One module per endpoint and per grant; one client
//! authentication step shared by the endpoints that need it. Handlers take a [`HostedRequest`]
//! and return a [`Reply`], so they know nothing of Pingora.

pub mod assertion;
pub mod authorize;
pub mod browser;
pub mod client_auth;
pub mod client_discovery;
pub mod clients;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod form;
pub mod grants;
pub mod introspect;
pub mod jwks;
pub mod jws;
pub mod login;
pub mod pages;
pub mod partner_id;
pub mod paths;
pub mod pkce;
pub mod register;
pub mod revoke;
pub mod software_statement;
pub mod throttle;
pub mod token;
pub mod user_flow;

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
    Authorization,
    Login,
    Consent,
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
            Endpoint::Authorization => "oauth:authorization",
            Endpoint::Login => "oauth:login",
            Endpoint::Consent => "oauth:consent",
        }
    }

    /// The methods the endpoint takes (HEAD goes with GET).
    pub fn methods(self) -> &'static [Method] {
        match self {
            Endpoint::OadaConfiguration | Endpoint::OAuthMetadata | Endpoint::Jwks | Endpoint::Authorization => &[Method::GET],
            Endpoint::Register | Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => &[Method::POST],
            Endpoint::Login | Endpoint::Consent => &[Method::GET, Method::POST],
        }
    }

    /// Does a request with `method` to this endpoint have a body to read?
    pub fn takes_body(self, method: &Method) -> bool {
        *method == Method::POST && self.methods().contains(&Method::POST)
    }
}

/// A request to a hosted endpoint, body already read (at most [`MAX_BODY_BYTES`]).
pub struct HostedRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The query string, if any.
    pub query: Option<&'a str>,
    pub body: Bytes,
    /// Unix seconds.
    pub now: u64,
    /// The client's address (per-address limits).
    pub client_ip: Option<std::net::IpAddr>,
    /// The request's trace, for the spans of its steps.
    pub trace: Option<&'a crate::telemetry::RequestTrace>,
}

impl HostedRequest<'_> {
    /// A step of handling this request, traced as a span when spans are exported (it ends when
    /// dropped).
    pub fn step(&self, name: &'static str) -> Option<crate::telemetry::Step> {
        self.trace.map(|t| t.step(name, opentelemetry::trace::SpanKind::Internal))
    }
}

pub struct AuthorizationServer {
    endpoints: Vec<(String, Endpoint)>,
    discovery: discovery::Documents,
    keys: Arc<KeyRing>,
    registrar: register::Registrar,
    token: token::TokenEndpoint,
    introspection: introspect::Introspection,
    revocation: revoke::Revocation,
    throttle: Arc<throttle::EndpointThrottle>,
    /// The user-delegated flow, when `authorization:` is configured.
    user_flow: Option<user_flow::UserFlow>,
}

impl AuthorizationServer {
    /// The authorization server of `config`; `previous` is the one it replaces on a reload (its
    /// per-address counts are kept when the limits are unchanged).
    pub fn new(
        config: Arc<Config>,
        verifier: Arc<TokenVerifier>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        previous: Option<&AuthorizationServer>,
    ) -> Self {
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
        if config.authorization.is_some() {
            for (path, endpoint) in [
                (paths::AUTHORIZATION, Endpoint::Authorization),
                (paths::LOGIN, Endpoint::Login),
                (paths::CONSENT, Endpoint::Consent),
            ] {
                endpoints.push((issuer.path(path), endpoint));
            }
        }
        let fetcher = Arc::new(KeyFetcher::new());
        let client_discovery = config
            .authorization
            .as_ref()
            .and_then(|a| a.client_discovery.clone())
            .map(|d| client_discovery::ClientDiscovery::new(d, metrics.clone()));
        let registry = Arc::new(ClientRegistry::new(&config, store.clone(), fetcher.clone(), client_discovery));
        let policy = AssertionPolicy {
            audiences: vec![issuer.url(paths::TOKEN), issuer.as_str().to_string()],
            leeway: config.leeway.as_secs(),
            max_lifetime: config.token_endpoint.max_assertion_lifetime.as_secs(),
        };
        let argon2 = Arc::new(crate::secrets::Argon2Verifier::default());
        let authn = Arc::new(ClientAuthenticator::new(registry.clone(), store.clone(), policy, argon2.clone()));
        let statements = config.software_statements.clone().map(|policy| {
            software_statement::StatementVerifier::new(policy, fetcher.clone(), config.leeway.as_secs())
        });
        let issuer_of_tokens = TokenIssuer::new(config.keys.clone(), issuer.as_str(), &config.audience, config.token_lifetime);
        let user_flow = config.authorization.clone().map(|authorization| {
            let users: Arc<dyn crate::users::UserSource> =
                Arc::new(crate::users::file::FileUsers::new(&authorization.users, argon2.clone()));
            user_flow::UserFlow {
                config: authorization,
                issuer: issuer.clone(),
                store: store.clone(),
                registry: registry.clone(),
                users,
                pages: pages::Pages::new(issuer.as_str()),
                cookies: browser::CookiePolicy::new(issuer),
                metrics: metrics.clone(),
            }
        });
        AuthorizationServer {
            endpoints,
            discovery: discovery::Documents::new(&config),
            keys: config.keys.clone(),
            registrar: register::Registrar::new(config.clone(), statements, registry.clone(), store.clone(), metrics.clone()),
            token: token::TokenEndpoint::new(
                authn.clone(),
                issuer_of_tokens,
                store.clone(),
                verifier.clone(),
                config.authorization.clone(),
                metrics.clone(),
                realm.clone(),
            ),
            introspection: introspect::Introspection::new(authn.clone(), verifier.clone(), realm.clone()),
            revocation: revoke::Revocation::new(authn, verifier, metrics.clone(), realm),
            throttle: match previous.map(|p| &p.throttle).filter(|t| t.enforces(&config.limits)) {
                Some(kept) => kept.clone(),
                None => Arc::new(throttle::EndpointThrottle::new(&config.limits, metrics)),
            },
            user_flow,
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
        let allowed = endpoint.methods();
        let method_ok = allowed.contains(request.method) || (*request.method == Method::HEAD && allowed.contains(&Method::GET));
        if !method_ok {
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            return Reply::error(405, "invalid_request", format!("use {} on this endpoint", names.join(" or ")))
                .with_header("Allow", names.join(", "));
        }
        if let Some(refusal) = self.throttle.check(endpoint, request.method, request.client_ip) {
            return refusal;
        }
        if let Some(flow) = &self.user_flow {
            let post = *request.method == Method::POST;
            match endpoint {
                Endpoint::Authorization => return authorize::authorize(flow, request).await,
                Endpoint::Login if post => return login::submit(flow, request).await,
                Endpoint::Login => return login::show(flow, request).await,
                Endpoint::Consent if post => return consent::decide(flow, request).await,
                Endpoint::Consent => return consent::show(flow, request).await,
                _ => {}
            }
        }
        match endpoint {
            Endpoint::OadaConfiguration => self.discovery.oada_configuration(),
            Endpoint::OAuthMetadata => self.discovery.oauth_metadata(),
            Endpoint::Jwks => jwks::reply(&self.keys),
            Endpoint::Register => self.registrar.register(request).await,
            Endpoint::Token => self.token.token(request).await,
            Endpoint::Introspect => self.introspection.introspect(request).await,
            Endpoint::Revoke => self.revocation.revoke(request).await,
            // only routed when the user-delegated flow is configured
            Endpoint::Authorization | Endpoint::Login | Endpoint::Consent => {
                Reply::error(404, "not_found", "the authorization endpoint is not configured")
            }
        }
    }
}
