//! The `gateway.yaml` file format, exactly as written by users.
//!
//! Nothing outside `config` sees these types: [`super::Config`] is built from them once, at
//! start-up, and carries parsed addresses, durations, loaded keys and the compiled route table.
//! Every struct denies unknown keys so that a typo is an error, not a silently ignored setting.

use super::duration::ConfigDuration;
use super::size::ConfigSize;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
    pub admin_listen: String,
    pub issuer: String,
    #[serde(default)]
    pub audience: Option<String>,
    pub signing_keys: Vec<RawSigningKey>,
    #[serde(default)]
    pub token_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub leeway: Option<ConfigDuration>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub software_statements: Option<RawSoftwareStatements>,
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub bearer: RawBearer,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub registration: RawRegistration,
    #[serde(default)]
    pub token_endpoint: RawTokenEndpoint,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub authorization: Option<RawAuthorization>,
    #[serde(default)]
    pub store: Option<RawStore>,
    #[serde(default)]
    pub rate_limits: Vec<RawRequestRateLimit>,
    #[serde(default)]
    pub quotas: Vec<RawQuota>,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
}

/// An external authorization server whose access tokens the proxy accepts (`issuers[]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub scope_claim: Option<String>,
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
    #[serde(default)]
    pub jwks_cache: RawJwksCache,
    #[serde(default)]
    pub startup: Option<String>,
    /// The prefix of its subjects in `X-OADA-User-Id` (`<name>:<sub>`); default: the issuer URL.
    #[serde(default)]
    pub name: Option<String>,
    /// Its `sub` values name the same people as the gateway's own (no prefix).
    #[serde(default)]
    pub shares_subjects: bool,
    /// The `typ` header its JWTs must carry (e.g. `at+jwt`, RFC 9068); default: not checked.
    #[serde(default)]
    pub require_typ: Option<String>,
}

/// RFC 7662 introspection of an issuer's opaque tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// Omitted with `discovery: true`: the discovered `introspection_endpoint`.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret_env: String,
    #[serde(default)]
    pub cache_max: Option<ConfigDuration>,
    #[serde(default)]
    pub inactive_cache: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwksCache {
    #[serde(default)]
    pub min_refresh: Option<ConfigDuration>,
    #[serde(default)]
    pub max_refresh: Option<ConfigDuration>,
    #[serde(default)]
    pub unknown_kid_cooldown: Option<ConfigDuration>,
    #[serde(default)]
    pub max_stale: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
}

/// Distributed tracing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    #[serde(default)]
    pub export_timeout: Option<ConfigDuration>,
}

/// A rate limit on proxied requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestRateLimit {
    pub name: String,
    /// A configured partner's name, or `*` for every partner (each its own bucket).
    #[serde(default)]
    pub partner: Option<String>,
    /// A route's name (its path unless named).
    #[serde(default)]
    pub route: Option<String>,
    /// One bucket per client address (an IPv6 /64 counts as one).
    #[serde(default)]
    pub per_client_address: bool,
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A request quota per partner per period.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    #[serde(default)]
    pub name: Option<String>,
    /// A configured partner's name, or `*` for every partner (each its own count).
    pub partner: String,
    pub limit: u64,
    /// `day`, `month` (UTC calendar), or a duration such as `1h`.
    pub per: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigningKey {
    pub kid: String,
    pub alg: String,
    pub private_key_file: String,
    /// next | active | retired; omitted: `active` for the first key when no key says so,
    /// otherwise `next`.
    #[serde(default)]
    pub status: Option<String>,
    /// RFC 3339 time a retired key stopped signing.
    #[serde(default)]
    pub retired_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    #[serde(default)]
    pub registration_file: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    #[serde(default)]
    pub introspection: bool,
    /// Where the authorization endpoint may send people back to (exact strings).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// `none` for a public client (no secret, no keys; PKCE required).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Shown on the consent page.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default)]
    pub policy_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoftwareStatements {
    #[serde(default)]
    pub trusted: Vec<RawTrustSource>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allow_untrusted: bool,
    #[serde(default)]
    pub untrusted_scopes: Vec<String>,
}

/// One source of keys trusted to sign software statements.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustSource {
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jku: Option<String>,
    #[serde(default)]
    pub trusted_list: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub servers: Vec<String>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub read_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub write_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub idle_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub healthy_threshold: Option<usize>,
    #[serde(default)]
    pub unhealthy_threshold: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub scope_type: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub forward_authorization: bool,
    /// Issuers whose tokens the route accepts (`iss` values; the gateway's own `issuer` among
    /// them); omitted: every configured issuer.
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBearer {
    #[serde(default)]
    pub allow_query_token: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub max_entries: Option<u64>,
    #[serde(default)]
    pub negative_ttl: Option<ConfigDuration>,
    #[serde(default)]
    pub negative_max_entries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistration {
    #[serde(default)]
    pub lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub max_entries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenEndpoint {
    #[serde(default)]
    pub max_assertion_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub max_replay_entries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub work_stealing: Option<bool>,
    #[serde(default)]
    pub grace_period: Option<ConfigDuration>,
    #[serde(default)]
    pub graceful_shutdown_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub upstream_keepalive_pool_size: Option<usize>,
    #[serde(default)]
    pub access_log: Option<bool>,
    #[serde(default)]
    pub upgrade_socket: Option<String>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub max_connections_per_address: Option<usize>,
    #[serde(default)]
    pub max_request_header_bytes: Option<ConfigSize>,
    #[serde(default)]
    pub max_request_header_line_bytes: Option<ConfigSize>,
    #[serde(default)]
    pub header_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub keepalive_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub keepalive_requests: Option<u32>,
    #[serde(default)]
    pub body_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub send_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub allow_trace: Option<bool>,
    #[serde(default)]
    pub underscores_in_headers: Option<bool>,
}

/// Per-client-address limits on the hosted endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub register: Option<RawRateLimit>,
    #[serde(default)]
    pub token: Option<RawRateLimit>,
    #[serde(default)]
    pub login: Option<RawRateLimit>,
    #[serde(default)]
    pub max_tracked_addresses: Option<usize>,
}

/// `{rate: 10/s, burst: 50}`; `rate: unlimited` turns the limit off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The user-delegated flow: authorization endpoint, login, consent, codes, refresh tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorization {
    #[serde(default)]
    pub users_file: Option<String>,
    #[serde(default)]
    pub session_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub code_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub require_pkce: Option<bool>,
    #[serde(default)]
    pub remember_consent: Option<bool>,
    #[serde(default)]
    pub consent_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub refresh_token_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub refresh_token_idle_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub scope_descriptions: BTreeMap<String, String>,
    #[serde(default)]
    pub client_discovery: Option<RawClientDiscovery>,
    #[serde(default)]
    pub login: Option<RawLogin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientDiscovery {
    #[serde(default)]
    pub trusted_providers: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub cache_ttl: Option<ConfigDuration>,
    #[serde(default)]
    pub max_entries: Option<u64>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
}

/// Slowing down password guessing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    #[serde(default)]
    pub max_failures_per_user: Option<u32>,
    #[serde(default)]
    pub max_failures_per_address: Option<u32>,
    #[serde(default)]
    pub failure_window: Option<ConfigDuration>,
    #[serde(default)]
    pub max_delay: Option<ConfigDuration>,
}

/// One entry of `authorization.users_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: String,
    pub password_hash: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

/// Where state lives: `{type: memory}` or `{type: redis, url: ...}` / `{type: redis_cluster, nodes: [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub key_prefix: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub command_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub on_outage: Option<String>,
    #[serde(default)]
    pub max_stale: Option<ConfigDuration>,
    #[serde(default)]
    pub rate_limit_sync: Option<ConfigDuration>,
}
