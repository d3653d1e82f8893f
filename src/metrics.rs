//! Every metric the gateway exports, registered in one registry and served on the admin port in
//! the Prometheus text format. Label values are bounded: route names come from the config,
//! methods outside the standard set count as `OTHER`, clients are configured names.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub auth_decisions: IntCounterVec,
    pub token_cache_hits: IntCounter,
    pub token_cache_misses: IntCounter,
    pub token_cache_entries: prometheus::IntGauge,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_failures: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub token_errors: IntCounterVec,
    pub registrations: IntCounterVec,
    pub revocations: IntCounter,
}

/// Auth decision outcomes always exported, so dashboards see zeros instead of gaps.
pub const AUTH_RESULTS: &[&str] = &[
    "allowed",
    "missing_token",
    "invalid_token",
    "expired_token",
    "revoked_token",
    "insufficient_scope",
    "invalid_request",
    "unavailable",
];

impl Metrics {
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
        for r in AUTH_RESULTS {
            auth_decisions.with_label_values(&[r]);
        }
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
            token_cache_hits,
            token_cache_misses,
            token_cache_entries,
            upstream_healthy,
            upstream_failures,
            tokens_issued,
            token_errors,
            registrations,
            revocations,
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
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
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
        let text = m.render();
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
