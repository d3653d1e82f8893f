//! Configuration: `gateway.yaml` is read once, at start-up, into a validated [`Config`].
//!
//! [`raw`] is the file format; [`build`] turns it into the types below (parsed addresses and
//! durations, loaded keys and client documents, the compiled route table), collecting every error
//! with the file and key it concerns. Nothing downstream re-checks or re-parses the file.

pub(crate) mod build;
pub mod duration;
pub mod edit;
pub mod env;
pub mod error;
pub mod raw;
pub mod size;

use crate::keys::{KeyRing, PublicJwkSet};
use crate::routes::RouteTable;
use crate::scope::ScopeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use build::clients::check_redirect_uri;
pub use error::{ConfigError, ConfigErrors};

/// The validated gateway configuration.
#[derive(Debug)]
pub struct Config {
    /// The file this was loaded from.
    pub file: PathBuf,
    /// What is running: 16 hex digits of a BLAKE3 hash of the config text and of every file it
    /// points at (keys, partner documents, users, TLS files). Values of `${VAR}`s are left out.
    pub hash: String,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub admin_listen: SocketAddr,
    pub issuer: Issuer,
    /// `aud` of issued access tokens, checked on every proxied request.
    pub audience: String,
    pub keys: Arc<KeyRing>,
    pub token_lifetime: Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat` of access tokens and client assertions.
    pub leeway: Duration,
    pub clients: Vec<ConfiguredClient>,
    pub software_statements: Option<SoftwareStatementPolicy>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: RouteTable,
    pub bearer: BearerConfig,
    pub cache: CacheConfig,
    pub registration: RegistrationConfig,
    pub token_endpoint: TokenEndpointConfig,
    pub server: ServerConfig,
    pub limits: EndpointLimits,
    /// The user-delegated flow; `None`: no authorization endpoint.
    pub authorization: Option<AuthorizationConfig>,
    pub store: StoreConfig,
    /// Rate limits on proxied requests (`rate_limits:`).
    pub rate_limits: Vec<RateLimitRule>,
    /// Request quotas per partner and period (`quotas:`).
    pub quotas: Vec<QuotaRule>,
    pub tracing: TracingConfig,
    /// External authorization servers whose tokens the proxy accepts (`issuers:`).
    pub issuers: Vec<ExternalIssuerConfig>,
}

/// Where an external issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// RFC 8414 / OpenID discovery under the issuer URL, then its `jwks_uri`.
    Discovery,
    Url(String),
    /// A local JWKS file, read with the config (reloaded with it).
    File(PublicJwkSet),
}

/// Which claim of an external token carries its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeClaim {
    /// `scope`: a space-separated string (RFC 9068, RFC 8693).
    Scope,
    /// `scp`: an array of strings (Azure AD, Okta).
    Scp,
    /// Either; both are merged when present.
    Both,
}

/// What the gateway does at start-up without an issuer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerStartup {
    /// Start, report not ready and refuse its tokens (503) until keys arrive.
    Degraded,
    /// Refuse to start.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksCacheConfig {
    /// Bounds on the refresh interval the issuer's `Cache-Control: max-age` asks for.
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// At most one fetch per issuer within this time for tokens naming an unknown `kid`; such
    /// `kid`s are remembered as unknown for as long.
    pub unknown_kid_cooldown: Duration,
    /// How long the last good keys are used while fetches fail.
    pub max_stale: Duration,
    pub timeout: Duration,
}

/// RFC 7662 introspection for an issuer's opaque tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// `None`: the discovered `introspection_endpoint`.
    pub endpoint: Option<String>,
    pub client_id: String,
    /// From `client_secret_env`.
    pub client_secret: EnvSecret,
    /// Active answers are cached until the token's `exp`, at most this long.
    pub cache_max: Duration,
    /// Inactive answers are cached this long.
    pub inactive_cache: Duration,
    pub timeout: Duration,
}

/// An external authorization server (`issuers[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIssuerConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// `None`: the issuer only has opaque tokens (introspection).
    pub keys: Option<KeySource>,
    /// Accepted `aud` values (one must be in the token's `aud`).
    pub audiences: Vec<String>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub scope_claim: ScopeClaim,
    pub introspection: Option<IntrospectionConfig>,
    pub jwks_cache: JwksCacheConfig,
    pub startup: IssuerStartup,
    /// The prefix of its people's ids upstream (`<name>:<sub>`); `None`: they share the
    /// gateway's subject space and pass unprefixed (`shares_subjects: true`).
    pub subject_prefix: Option<String>,
    /// The `typ` its JWTs must carry, compared case-insensitively (RFC 8725 §3.11).
    pub require_typ: Option<String>,
}

/// Distributed tracing (`tracing:`).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans go (OTLP/HTTP, protobuf), e.g. `http://collector:4318/v1/traces`; `None`:
    /// trace context is still propagated, nothing is exported.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Share of new traces recorded (a client's sampled flag is followed).
    pub sample_ratio: f64,
    pub export_timeout: Duration,
}

/// Whose requests a limit counts, and in how many buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnerMatch {
    /// Every request (with or without a token), in one bucket (or one per address).
    Any,
    /// Requests with a configured partner's token, one bucket per partner.
    EachPartner,
    /// Requests with this partner's tokens.
    Named(String),
}

/// A rate limit on proxied requests (`rate_limits[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    /// The `rule` label of `oada_gateway_rate_limited_total` and the `RateLimit-Policy` name.
    pub name: String,
    pub partner: PartnerMatch,
    /// Only requests to routes of this name; `None`: every route.
    pub route: Option<String>,
    /// One bucket per client address as well.
    pub per_client_address: bool,
    pub quota: crate::ratelimit::Quota,
}

/// The period a quota counts over (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    Month,
    /// Fixed windows of this length from the Unix epoch.
    Every(Duration),
}

/// A request quota per partner and period (`quotas[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRule {
    pub name: String,
    /// [`PartnerMatch::EachPartner`] or [`PartnerMatch::Named`].
    pub partner: PartnerMatch,
    pub limit: u64,
    pub period: QuotaPeriod,
}

/// Where the gateway's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In this process (one replica).
    Memory,
    /// Redis or Redis Cluster, shared by every replica.
    Redis(RedisConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServers {
    /// `redis://` or `rediss://` URL of one server.
    Single(String),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

/// What the proxy does with cached tokens while the revocation mirror may be stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutagePolicy {
    /// 503 for protected routes until the mirror is current again.
    FailClosed,
    /// Cached, unrevoked tokens keep working for `max_stale`, then 503.
    ServeCached,
}

#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub servers: RedisServers,
    /// Prepended to every key (and the revocation channel); no `{` or `}` (Cluster hash tags).
    pub key_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub pool_size: usize,
    pub on_outage: OutagePolicy,
    pub max_stale: Duration,
    /// How often a replica adds its rate-limit and quota counts to the shared ones.
    pub rate_limit_sync: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the password
        f.debug_struct("RedisConfig")
            .field("servers", &self.servers)
            .field("key_prefix", &self.key_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("command_timeout", &self.command_timeout)
            .field("on_outage", &self.on_outage)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// A hash of both files as loaded (a reload notices new certificates).
    pub contents: [u8; 32],
}

/// The public base URL of the gateway; every endpoint URL derives from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Without a trailing slash, e.g. `https://api.grounddata.example` or `https://h/oauth`.
    base: String,
    /// The path part of `base` (empty, or like `/oauth`); hosted endpoints live below it.
    path_prefix: String,
}

impl Issuer {
    pub fn as_str(&self) -> &str {
        &self.base
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// The absolute URL of an endpoint path such as `/token`.
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}{}", self.base, endpoint)
    }

    /// The request path an endpoint such as `/token` is served at.
    pub fn path(&self, endpoint: &str) -> String {
        format!("{}{}", self.path_prefix, endpoint)
    }
}

/// Where a client's public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    Jwks(PublicJwkSet),
    JwksUri(String),
}

/// A partner's client registration document, agreed in advance and stored by the API owner.
#[derive(Debug, Clone)]
pub struct ClientDocument {
    pub file: PathBuf,
    /// The document as stored, echoed (with our decisions) in registration responses.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub keys: ClientKeys,
    /// RFC 7638 thumbprints of `keys` when they are inline.
    pub thumbprints: Vec<String>,
}

/// A client secret for `client_secret_basic` / `client_secret_post`.
#[derive(Clone)]
pub enum ClientSecret {
    /// Read from an environment variable at start-up.
    Plain { env_var: String, value: String },
    /// An Argon2 PHC string (`$argon2id$...`).
    Argon2 { phc: String },
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSecret::Plain { env_var, .. } => write!(f, "ClientSecret::Plain(from ${env_var})"),
            ClientSecret::Argon2 { .. } => f.write_str("ClientSecret::Argon2(..)"),
        }
    }
}

/// A secret read from an environment variable; `Debug` names the variable, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvSecret {
    pub env_var: String,
    pub value: String,
}

impl std::fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnvSecret(from ${})", self.env_var)
    }
}

/// The grants a client may use at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantTypes {
    pub client_credentials: bool,
    pub jwt_bearer: bool,
    pub authorization_code: bool,
    pub refresh_token: bool,
}

impl GrantTypes {
    /// The RFC 7591 names of the grants.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.client_credentials {
            out.push(GRANT_CLIENT_CREDENTIALS);
        }
        if self.jwt_bearer {
            out.push(GRANT_JWT_BEARER);
        }
        if self.authorization_code {
            out.push(GRANT_AUTHORIZATION_CODE);
        }
        if self.refresh_token {
            out.push(GRANT_REFRESH_TOKEN);
        }
        out
    }
}

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";

/// A partner configured in `gateway.yaml`.
#[derive(Debug, Clone)]
pub struct ConfiguredClient {
    pub name: String,
    pub document: Option<ClientDocument>,
    /// What the partner may be granted.
    pub scopes: ScopeSet,
    /// A fixed client_id usable without registering first.
    pub client_id: Option<String>,
    pub secret: Option<ClientSecret>,
    /// May introspect tokens issued to other clients.
    pub introspection: bool,
    /// Exact redirect URIs for the authorization endpoint.
    pub redirect_uris: Vec<String>,
    pub grant_types: GrantTypes,
    /// A public client: no secret, no keys; it must use PKCE.
    pub public: bool,
    /// What the consent page shows.
    pub display_name: String,
    pub contact: Option<String>,
    pub policy_uri: Option<String>,
}

/// A person who can sign in (from `authorization.users_file`).
#[derive(Clone)]
pub struct UserRecord {
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    pub name: String,
    /// The `sub` of this person's tokens.
    pub id: String,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord").field("username", &self.username).field("id", &self.id).finish_non_exhaustive()
    }
}

/// OADA client discovery (seed 003): `<id>@<provider>` client_ids.
#[derive(Debug, Clone)]
pub struct ClientDiscoveryConfig {
    /// Hosts (or host:port) matched exactly; no other provider is ever contacted.
    pub trusted_providers: Vec<String>,
    /// What discovered clients may ask for.
    pub scopes: ScopeSet,
    pub cache_ttl: Duration,
    pub max_entries: u64,
    pub timeout: Duration,
}

/// Slowing down password guessing: after `max_failures_*` failures within `failure_window`, each
/// further attempt waits twice as long as the one before, up to `max_delay`.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub max_failures_per_user: u32,
    pub max_failures_per_address: u32,
    pub failure_window: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthorizationConfig {
    pub users_file: PathBuf,
    pub users: Vec<UserRecord>,
    pub session_lifetime: Duration,
    pub code_lifetime: Duration,
    pub require_pkce: bool,
    pub remember_consent: bool,
    pub consent_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub refresh_token_idle_lifetime: Duration,
    pub scope_descriptions: std::collections::BTreeMap<String, String>,
    pub client_discovery: Option<ClientDiscoveryConfig>,
    pub login: LoginConfig,
}

/// A source of keys trusted to sign software statements.
#[derive(Debug, Clone)]
pub enum TrustSource {
    /// A key set loaded from a file; statements whose `kid` is in it are verified with it.
    Jwks(PublicJwkSet),
    /// A key-set URL; statements naming it as `jku` are verified with the keys fetched from it.
    Jku(String),
    /// An OADA trusted list (v1: array of jku URLs; v2: `{version: "2", jkus, jwks}`) at a URL.
    TrustedListUrl(String),
}

#[derive(Debug, Clone)]
pub struct SoftwareStatementPolicy {
    pub trusted: Vec<TrustSource>,
    /// What clients registered with a trusted statement may be granted.
    pub scopes: ScopeSet,
    /// Accept statements verifiable only with their own embedded key.
    pub allow_untrusted: bool,
    pub untrusted_scopes: ScopeSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    None,
    Tcp,
    Http { path: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<SocketAddr>,
    pub health_check: HealthCheckConfig,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long an idle upstream keep-alive connection is kept in the pool.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct BearerConfig {
    /// Accept `?access_token=` (RFC 6750 §2.3). Off by default: URLs end up in logs.
    pub allow_query_token: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub negative_ttl: Duration,
    pub negative_max_entries: u64,
}

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub lifetime: Duration,
    pub max_entries: u64,
}

#[derive(Debug, Clone)]
pub struct TokenEndpointConfig {
    /// How far ahead of now a client assertion's `exp` may be.
    pub max_assertion_lifetime: Duration,
    /// Bound on remembered assertion `jti`s; when full, new assertions are refused, never replays
    /// let through.
    pub max_replay_entries: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub upstream_keepalive_pool_size: usize,
    pub access_log: bool,
    /// The Unix socket a graceful upgrade passes the listening sockets through.
    pub upgrade_socket: PathBuf,
    pub downstream: DownstreamConfig,
}

/// Limits on the client side of the proxy's connections, before and between requests; the
/// defaults are close to nginx's and Envoy's.
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamConfig {
    /// Open client connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open client connections from one address (an IPv6 /64 counts as one address).
    pub max_connections_per_address: usize,
    /// The whole request head (request line and header fields); larger heads get 431.
    pub max_request_header_bytes: usize,
    /// One header field or the request line; longer ones get 431 (414 for the request line).
    pub max_request_header_line_bytes: usize,
    /// Deadline for a complete request head, from the connection's start (first request) or the
    /// request's first byte (later ones); expiry → 408 and close.
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection waits for the next request.
    pub keepalive_timeout: Duration,
    /// Requests served on one connection before it is closed (as nginx's keepalive_requests).
    pub keepalive_requests: u32,
    /// Deadline for a proxied request's whole body, from the end of its head; expiry → 408.
    pub body_timeout: Duration,
    /// Longest wait for the client to accept response bytes.
    pub send_timeout: Duration,
    /// Answer TRACE (405 by default: it echoes credentials back to scripts).
    pub allow_trace: bool,
    /// Forward header names with underscores (dropped by default, as nginx does); names that
    /// fold into the gateway's own (`X_OADA_*`, `X_Forwarded_*`) are dropped either way.
    pub underscores_in_headers: bool,
}

/// Per-client-address rate limits on the hosted endpoints, so that they cannot be flooded.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointLimits {
    /// `POST /register`; `None`: unlimited.
    pub register: Option<crate::ratelimit::Quota>,
    /// `POST /token` (and introspection and revocation, which authenticate clients the same way).
    pub token: Option<crate::ratelimit::Quota>,
    /// `POST /login`, the sign-in form.
    pub login: Option<crate::ratelimit::Quota>,
    /// Client addresses tracked at once per limit; beyond that new addresses get 503.
    pub max_tracked_addresses: usize,
}

impl Config {
    /// Reads and validates `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, &env::ProcessEnv)
    }

    pub fn load_with_env(path: &Path, environment: &dyn env::Environment) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Self::from_yaml(&text, path, environment)
    }

    /// Parses config text as if it were the file `path` (relative paths resolve against its folder).
    pub fn from_yaml(text: &str, path: &Path, environment: &dyn env::Environment) -> Result<Config, ConfigErrors> {
        build::build(text, path, environment)
    }

    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }
}
