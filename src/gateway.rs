//! The running gateway's shared state, built once from the validated config.

use crate::auth::verifier::{TokenVerifier, VerifierConfig};
use crate::auth::Authorizer;
use crate::config::Config;
use crate::metrics::{Metrics, RouteMetrics};
use crate::oauth::AuthorizationServer;
use crate::store::{Store, StoreTask};
use crate::upstream::{HealthService, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests being handled by the proxy right now; shutdown waits for this to reach zero.
#[derive(Default)]
pub struct InFlight(AtomicUsize);

/// Counts one request as in flight until dropped.
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Release);
    }
}

/// The `route` label of requests that match no route and no hosted endpoint.
pub const UNMATCHED_LABEL: &str = "unmatched";

pub struct Gateway {
    pub config: Arc<Config>,
    pub authorizer: Authorizer,
    pub verifier: Arc<TokenVerifier>,
    pub oauth: AuthorizationServer,
    /// Indexed like `config.upstreams` (routes refer to them by index).
    pub upstreams: Vec<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Request metrics resolved per route (indexed by route id), and for requests matching none.
    pub route_metrics: Vec<RouteMetrics>,
    pub unmatched_metrics: RouteMetrics,
    pub store: Arc<dyn Store>,
    pub in_flight: Arc<InFlight>,
}

impl Gateway {
    /// Builds the gateway with the configured store, and the background work the server must
    /// run (health checks, the store's task).
    pub fn build(config: Config) -> Result<(Arc<Gateway>, Vec<HealthService>, Option<StoreTask>), String> {
        let metrics = Arc::new(Metrics::new());
        let (store, store_task) = crate::store::open(&config, metrics.clone())?;
        let (gateway, services) = Self::build_with(config, store, metrics).map_err(|e| format!("cannot set up upstreams: {e}"))?;
        Ok((gateway, services, store_task))
    }

    /// Builds the gateway on a given store.
    pub fn build_with(config: Config, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> std::io::Result<(Arc<Gateway>, Vec<HealthService>)> {
        let config = Arc::new(config);
        let verifier = Arc::new(TokenVerifier::new(
            config.keys.clone(),
            &VerifierConfig {
                issuer: config.issuer.as_str().to_string(),
                audience: config.audience.clone(),
                leeway: config.leeway,
                max_entries: config.cache.max_entries,
                negative_ttl: config.cache.negative_ttl,
                negative_max_entries: config.cache.negative_max_entries,
                token_lifetime: config.token_lifetime,
                outage: match &config.store {
                    crate::config::StoreConfig::Redis(r) => Some((r.on_outage, r.max_stale)),
                    crate::config::StoreConfig::Memory => None,
                },
            },
            store.clone(),
        ));
        let authorizer = Authorizer::new(verifier.clone(), config.bearer.allow_query_token);
        let mut upstreams = Vec::new();
        let mut services = Vec::new();
        for u in &config.upstreams {
            let (upstream, service) = Upstream::build(u)?;
            upstreams.push(upstream);
            services.extend(service);
        }
        let oauth = AuthorizationServer::new(config.clone(), verifier.clone(), store.clone(), metrics.clone());
        let route_metrics = config.routes.routes().iter().map(|r| metrics.route_metrics(&r.name)).collect();
        let unmatched_metrics = metrics.route_metrics(UNMATCHED_LABEL);
        let gateway = Gateway {
            config,
            route_metrics,
            unmatched_metrics,
            authorizer,
            verifier,
            oauth,
            upstreams,
            metrics,
            store,
            in_flight: Arc::default(),
        };
        Ok((Arc::new(gateway), services))
    }

    /// Ready to serve: every upstream has a healthy server, and the revocations are known.
    pub fn is_ready(&self) -> bool {
        self.upstreams.iter().all(Upstream::is_ready) && self.store_is_current()
    }

    /// The store answers and this replica's revocation list is current.
    pub fn store_is_current(&self) -> bool {
        self.store.revocations().stale_since().is_none()
    }

    /// Refreshes the gauges computed on demand (called before each scrape).
    pub fn refresh_gauges(&self) {
        let revocations = self.store.revocations();
        self.metrics
            .revocation_mirror_entries
            .set(i64::try_from(revocations.len()).unwrap_or(i64::MAX));
        self.metrics
            .token_cache_entries
            .set(i64::try_from(self.verifier.cached_entries()).unwrap_or(i64::MAX));
        for u in &self.upstreams {
            for (server, healthy) in u.servers_health() {
                self.metrics
                    .upstream_healthy
                    .with_label_values(&[u.name(), &server.to_string()])
                    .set(i64::from(healthy));
            }
        }
    }
}
