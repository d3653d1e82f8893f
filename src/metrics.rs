//! Every metric the gateway exports, registered in one registry and served on the admin port in
//! the Prometheus text format. Label values are bounded: route names come from the config,
//! methods outside the standard set count as `OTHER`, clients are configured names.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub auth_decisions: IntCounterVec,
    auth_decision_counters: [IntCounter; AUTH_RESULTS.len()],
    pub token_cache_hits: IntCounter,
    pub token_cache_misses: IntCounter,
    pub token_cache_entries: prometheus::IntGauge,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_failures: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub token_errors: IntCounterVec,
    pub registrations: IntCounterVec,
    pub revocations: IntCounter,
    pub downstream_connections: prometheus::IntGauge,
    pub downstream_closes: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub authorizations: IntCounterVec,
    pub client_discovery_fetches: IntCounterVec,
    pub store_up: prometheus::IntGauge,
    pub store_errors: IntCounterVec,
    pub store_latency: HistogramVec,
    pub revocation_mirror_entries: prometheus::IntGauge,
    config_info: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    partner_requests: IntCounterVec,
    partner_response_bytes: IntCounterVec,
    /// External issuers' key sets and introspection (`issuers:`), by issuer.
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_age: prometheus::GaugeVec,
    pub introspections: IntCounterVec,
    signing_key_age: prometheus::GaugeVec,
}

/// Auth decision outcomes always exported, so dashboards see zeros instead of gaps.
pub const AUTH_RESULTS: [&str; 8] = [
    "allowed",
    "missing_token",
    "invalid_token",
    "expired_token",
    "revoked_token",
    "insufficient_scope",
    "invalid_request",
    "unavailable",
];

/// Label values of `method`: the standard methods, everything else as `OTHER`.
const METHOD_LABELS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"];

/// Label values of `status`: common codes by value, the rest by class (`0`: no response).
const STATUS_LABELS: [&str; 24] = [
    "200", "201", "204", "301", "302", "304", "400", "401", "403", "404", "405", "413", "415", "429", "500", "502",
    "503", "504", "0", "1xx", "2xx", "3xx", "4xx", "5xx",
];

fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::PATCH => 4,
        http::Method::DELETE => 5,
        http::Method::OPTIONS => 6,
        _ => 7,
    }
}

fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        201 => 1,
        204 => 2,
        301 => 3,
        302 => 4,
        304 => 5,
        400 => 6,
        401 => 7,
        403 => 8,
        404 => 9,
        405 => 10,
        413 => 11,
        415 => 12,
        429 => 13,
        500 => 14,
        502 => 15,
        503 => 16,
        504 => 17,
        100..=199 => 19,
        200..=299 => 20,
        300..=399 => 21,
        400..=499 => 22,
        500..=599 => 23,
        _ => 18,
    }
}

/// A bounded label for an HTTP status code.
pub fn status_label(status: u16) -> &'static str {
    STATUS_LABELS[status_index(status)]
}

/// The `partner` label of requests whose token names no configured partner.
pub const OTHER_PARTNER: &str = "other";

/// Per-partner usage, resolved once per config: recording is two atomic adds; a (partner,
/// route, status) counter is created on first use. Label values come only from the config (and
/// `other`), so the series are bounded.
pub struct PartnerMetrics {
    labels: Vec<String>,
    routes: Vec<String>,
    requests: IntCounterVec,
    bytes: Vec<IntCounter>,
    counts: Box<[OnceLock<IntCounter>]>,
}

impl PartnerMetrics {
    /// Counts a request with a token of `partner` (a configured partner's index; `None`: other).
    pub fn record(&self, partner: Option<u16>, route: usize, status: u16, body_bytes: u64) {
        let p = partner.map_or(self.labels.len() - 1, usize::from).min(self.labels.len() - 1);
        if route >= self.routes.len() {
            return;
        }
        let s = status_index(status);
        self.counts[(p * self.routes.len() + route) * STATUS_LABELS.len() + s]
            .get_or_init(|| self.requests.with_label_values(&[&self.labels[p], &self.routes[route], STATUS_LABELS[s]]))
            .inc();
        self.bytes[p].inc_by(body_bytes);
    }
}

/// The request metrics of one `route` label, resolved once: recording a request is then two
/// atomic adds, with no label hashing or registry lock on the request path. Counters for a
/// (method, status) pair are created on first use, so `/metrics` shows only pairs that happened.
pub struct RouteMetrics {
    label: String,
    requests: IntCounterVec,
    duration: Histogram,
    counts: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    pub fn record(&self, method: &http::Method, status: u16, elapsed: Duration) {
        let (m, s) = (method_index(method), status_index(status));
        self.counts[m * STATUS_LABELS.len() + s]
            .get_or_init(|| self.requests.with_label_values(&[self.label.as_str(), METHOD_LABELS[m], STATUS_LABELS[s]]))
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    /// Resolves the request metrics of a `route` label (done once per route at start-up).
    pub fn route_metrics(&self, label: &str) -> RouteMetrics {
        RouteMetrics {
            label: label.to_string(),
            requests: self.requests.clone(),
            duration: self.request_duration.with_label_values(&[label]),
            counts: (0..METHOD_LABELS.len() * STATUS_LABELS.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts a request under `label` (for labels without resolved [`RouteMetrics`]).
    pub fn record_request(&self, label: &str, method: &http::Method, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[label, method_label(method), status_label(status)])
            .inc();
        self.request_duration
            .with_label_values(&[label])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one `oada_gateway_auth_decisions_total{result}`: a resolved counter for the results
    /// of [`AUTH_RESULTS`], a label lookup for any other.
    pub fn count_auth_decision(&self, result: &str) {
        match AUTH_RESULTS.iter().position(|r| *r == result) {
            Some(i) => self.auth_decision_counters[i].inc(),
            None => self.auth_decisions.with_label_values(&[result]).inc(),
        }
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let requests = counter_vec(
            "oada_gateway_requests_total",
            "Requests answered, by route, method and status.",
            &["route", "method", "status"],
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "oada_gateway_request_duration_seconds",
                "Time from request to the end of the response, by route.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("unique metric");
        let auth_decisions = counter_vec(
            "oada_gateway_auth_decisions_total",
            "Access decisions on protected routes, by result.",
            &["result"],
        );
        // resolved once, so dashboards see zeros instead of gaps and the request path no lookups
        let auth_decision_counters = AUTH_RESULTS.map(|r| auth_decisions.with_label_values(&[r]));
        let token_cache_hits = counter(
            "oada_gateway_token_cache_hits_total",
            "Bearer tokens answered from the verification cache.",
        );
        let token_cache_misses = counter(
            "oada_gateway_token_cache_misses_total",
            "Bearer tokens that needed a signature check.",
        );
        let token_cache_entries = prometheus::IntGauge::new(
            "oada_gateway_token_cache_entries",
            "Verified tokens held in the cache (approximate).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(token_cache_entries.clone()))
            .expect("unique metric");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "oada_gateway_upstream_healthy",
                "1 when the upstream server passes its health check, else 0.",
            ),
            &["upstream", "server"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(upstream_healthy.clone()))
            .expect("unique metric");
        let upstream_failures = counter_vec(
            "oada_gateway_upstream_failures_total",
            "Failed attempts to reach an upstream, by upstream and kind (connect, timeout, no_healthy_server, other).",
            &["upstream", "kind"],
        );
        let tokens_issued = counter_vec(
            "oada_gateway_tokens_issued_total",
            "Access tokens issued, by grant type and client.",
            &["grant_type", "client"],
        );
        let token_errors = counter_vec(
            "oada_gateway_token_errors_total",
            "Token endpoint errors, by RFC 6749 error code.",
            &["error"],
        );
        let registrations = counter_vec(
            "oada_gateway_registrations_total",
            "Client registrations, by result.",
            &["result"],
        );
        let revocations = counter("oada_gateway_revocations_total", "Access tokens revoked.");
        let downstream_connections = prometheus::IntGauge::new(
            "oada_gateway_downstream_connections",
            "Client connections open on the proxy listener.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(downstream_connections.clone()))
            .expect("unique metric");
        let downstream_closes = counter_vec(
            "oada_gateway_downstream_closes_total",
            "Client connections the gateway refused or closed for a limit, by reason (too_many_connections, \
             too_many_connections_per_address, header_too_large, header_timeout, body_timeout, idle_timeout).",
            &["reason"],
        );
        let authorizations = counter_vec(
            "oada_gateway_authorizations_total",
            "Steps of the user-delegated flow, by result (approved, denied, remembered, login_failed, login_throttled, \
             logged_in, invalid_request, untrusted_client, unknown_client, bad_redirect_uri, csrf_failed, ...).",
            &["result"],
        );
        let client_discovery_fetches = counter_vec(
            "oada_gateway_client_discovery_fetches_total",
            "Fetches of OADA client discovery documents, by result (ok, not_found, invalid, error).",
            &["result"],
        );
        let gauge = |name: &str, help: &str| {
            let g = prometheus::IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let store_up = gauge(
            "oada_gateway_store_up",
            "1 while the state store answers (always 1 for the in-memory store), else 0.",
        );
        store_up.set(1);
        let store_errors = counter_vec(
            "oada_gateway_store_errors_total",
            "Failed store operations, by operation.",
            &["op"],
        );
        let store_latency = HistogramVec::new(
            HistogramOpts::new("oada_gateway_store_latency_seconds", "Time of store operations, by operation.")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["op"],
        )
        .expect("valid metric");
        registry.register(Box::new(store_latency.clone())).expect("unique metric");
        let revocation_mirror_entries = gauge(
            "oada_gateway_revocation_mirror_entries",
            "Revocations this replica holds in memory (its mirror of the store's).",
        );
        let rate_limited = counter_vec(
            "oada_gateway_rate_limited_total",
            "Requests refused with 429 by a rate limit, by partner (or - for per-address limits) and rule.",
            &["partner", "rule"],
        );
        let config_info = IntGaugeVec::new(
            Opts::new("oada_gateway_config_info", "The config in force: 1 for its hash (the config text and the files it names)."),
            &["hash"],
        )
        .expect("valid metric");
        registry.register(Box::new(config_info.clone())).expect("unique metric");
        let config_reloads = counter_vec(
            "oada_gateway_config_reloads_total",
            "Config reloads (SIGHUP, POST /reload), by result: ok, or error (the running config stays).",
            &["result"],
        );
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        let partner_requests = counter_vec(
            "oada_gateway_partner_requests_total",
            "Requests with a token, by the token's partner (configured name, or other), route and status.",
            &["partner", "route", "status"],
        );
        let partner_response_bytes = counter_vec(
            "oada_gateway_partner_response_bytes_total",
            "Response body bytes sent for requests with a token, by the token's partner (configured name, or other).",
            &["partner"],
        );
        let jwks_fetches = counter_vec(
            "oada_gateway_jwks_fetches_total",
            "Key-set fetches of external issuers, by issuer and result (ok, error).",
            &["issuer", "result"],
        );
        let jwks_keys = IntGaugeVec::new(
            Opts::new("oada_gateway_jwks_keys", "Keys in use of each external issuer."),
            &["issuer"],
        )
        .expect("valid metric");
        registry.register(Box::new(jwks_keys.clone())).expect("unique metric");
        let jwks_age = prometheus::GaugeVec::new(
            Opts::new(
                "oada_gateway_jwks_age_seconds",
                "Age of the key set in use of each external issuer (since its last successful fetch).",
            ),
            &["issuer"],
        )
        .expect("valid metric");
        registry.register(Box::new(jwks_age.clone())).expect("unique metric");
        let introspections = counter_vec(
            "oada_gateway_introspections_total",
            "Introspection calls to external issuers for opaque tokens, by issuer and result (active, inactive, error).",
            &["issuer", "result"],
        );
        let signing_key_age = prometheus::GaugeVec::new(
            Opts::new(
                "oada_gateway_signing_key_age_seconds",
                "Age of each of the gateway's signing keys (since its key file was written), by kid and status (next, active, retired).",
            ),
            &["kid", "status"],
        )
        .expect("valid metric");
        registry.register(Box::new(signing_key_age.clone())).expect("unique metric");
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            registry.register(Box::new(process)).expect("unique metric");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            auth_decisions,
            auth_decision_counters,
            token_cache_hits,
            token_cache_misses,
            token_cache_entries,
            upstream_healthy,
            upstream_failures,
            tokens_issued,
            token_errors,
            registrations,
            revocations,
            downstream_connections,
            downstream_closes,
            rate_limited,
            authorizations,
            client_discovery_fetches,
            store_up,
            store_errors,
            store_latency,
            revocation_mirror_entries,
            config_info,
            config_reloads,
            partner_requests,
            partner_response_bytes,
            jwks_fetches,
            jwks_keys,
            jwks_age,
            introspections,
            signing_key_age,
        }
    }

    /// Resolves the per-partner metrics of a config's partners and routes (once per config).
    pub fn partner_metrics(&self, partners: &[String], routes: &[&str]) -> PartnerMetrics {
        let mut labels: Vec<String> = partners.to_vec();
        labels.push(OTHER_PARTNER.to_string());
        PartnerMetrics {
            bytes: labels.iter().map(|p| self.partner_response_bytes.with_label_values(&[p])).collect(),
            counts: (0..labels.len() * routes.len() * STATUS_LABELS.len()).map(|_| OnceLock::new()).collect(),
            routes: routes.iter().map(|r| r.to_string()).collect(),
            labels,
            requests: self.partner_requests.clone(),
        }
    }

    /// Records which config is in force (one series, for its hash).
    pub fn set_config_info(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Sets one age series per key of the ring in force (a removed key's series goes away).
    pub fn observe_signing_keys(&self, keys: &crate::keys::KeyRing, now: std::time::SystemTime) {
        self.signing_key_age.reset();
        // a key whose file has no modification time (rare file systems) has no series
        for key in keys.keys() {
            let Some(created) = key.lifecycle.created_at else { continue };
            self.signing_key_age
                .with_label_values(&[key.kid.as_str(), key.lifecycle.status.name()])
                .set(now.duration_since(created).unwrap_or_default().as_secs_f64());
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding metrics to memory cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bounded label for an HTTP method.
pub fn method_label(method: &http::Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_named_metric() {
        let m = Metrics::new();
        m.requests.with_label_values(&["/x", "GET", "200"]).inc();
        m.request_duration.with_label_values(&["/x"]).observe(0.001);
        m.upstream_healthy.with_label_values(&["weather", "127.0.0.1:1"]).set(1);
        m.tokens_issued.with_label_values(&["client_credentials", "mm"]).inc();
        m.token_errors.with_label_values(&["invalid_grant"]).inc();
        m.registrations.with_label_values(&["created"]).inc();
        let route = m.route_metrics("/observations");
        route.record(&http::Method::GET, 200, Duration::from_millis(1));
        route.record(&http::Method::GET, 200, Duration::from_millis(1));
        route.record(&http::Method::from_bytes(b"PROPFIND").unwrap(), 207, Duration::ZERO);
        m.count_auth_decision("insufficient_scope");
        let text = m.render();
        assert!(text.contains(r#"oada_gateway_requests_total{method="GET",route="/observations",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"oada_gateway_requests_total{method="OTHER",route="/observations",status="2xx"} 1"#));
        assert!(text.contains(r#"oada_gateway_request_duration_seconds_count{route="/observations"} 3"#));
        assert!(text.contains(r#"oada_gateway_auth_decisions_total{result="insufficient_scope"} 1"#));
        assert!(text.contains(r#"oada_gateway_auth_decisions_total{result="allowed"} 0"#));
        for name in [
            "oada_gateway_requests_total",
            "oada_gateway_request_duration_seconds",
            "oada_gateway_auth_decisions_total",
            "oada_gateway_token_cache_hits_total",
            "oada_gateway_token_cache_misses_total",
            "oada_gateway_upstream_healthy",
            "oada_gateway_tokens_issued_total",
            "oada_gateway_token_errors_total",
            "oada_gateway_registrations_total",
            "oada_gateway_revocations_total",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
