//! The running gateway: [`Shared`] holds what lives as long as the process (metrics, the store,
//! the in-flight count) and the [`Gateway`] in force, one loaded config and everything built from
//! it. A reload builds the next `Gateway` beside the running one and swaps it in atomically: each
//! request takes the one in force when it starts and keeps it to its end, so it sees one config,
//! old or new, never a mix.

use crate::auth::verifier::{TokenVerifier, VerifierConfig};
use crate::auth::Authorizer;
use crate::config::Config;
use crate::issuers::ExternalIssuers;
use crate::metrics::{Metrics, PartnerMetrics, RouteMetrics};
use crate::ratelimit::requests::RequestLimits;
use crate::oauth::AuthorizationServer;
use crate::store::{Store, StoreTask};
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

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

/// One loaded config and everything built from it.
pub struct Gateway {
    pub config: Arc<Config>,
    pub authorizer: Authorizer,
    pub verifier: Arc<TokenVerifier>,
    pub oauth: AuthorizationServer,
    /// Indexed like `config.upstreams` (routes refer to them by index).
    pub upstreams: Vec<Arc<Upstream>>,
    pub metrics: Arc<Metrics>,
    /// Request metrics resolved per route (indexed by route id), and for requests matching none.
    pub route_metrics: Vec<RouteMetrics>,
    pub unmatched_metrics: RouteMetrics,
    /// Usage by partner (indexed like `config.clients`) and route.
    pub partner_metrics: PartnerMetrics,
    /// Rate limits and quotas on proxied requests.
    pub limits: RequestLimits,
    /// `Host` for HTTP/1.0 requests that send none: the issuer's authority.
    pub own_host: String,
    pub store: Arc<dyn Store>,
}

impl Gateway {
    /// Builds what `config` describes on the process's store and metrics. `previous`, the
    /// gateway being replaced on a reload, lends what must survive it: the token caches,
    /// unchanged upstreams (with their pooled health state) and rate-limit counts.
    pub fn build(config: Config, store: Arc<dyn Store>, metrics: Arc<Metrics>, previous: Option<&Gateway>) -> std::io::Result<Gateway> {
        let config = Arc::new(config);
        let verifier_config = VerifierConfig {
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
            partners: config.clients.iter().map(|c| c.name.clone()).collect(),
        };
        let external = Arc::new(ExternalIssuers::build(
            &config.issuers,
            &metrics,
            previous.and_then(|p| p.verifier.external_issuers()).map(|e| &**e),
        ));
        let verifier = Arc::new(
            match previous {
                Some(p) => TokenVerifier::succeeding(config.keys.clone(), &verifier_config, store.clone(), &p.verifier),
                None => TokenVerifier::new(config.keys.clone(), &verifier_config, store.clone()),
            }
            .with_external_issuers(external),
        );
        let authorizer = Authorizer::new(verifier.clone(), config.bearer.allow_query_token);
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let before = previous.and_then(|p| p.upstreams.iter().find(|old| old.name() == u.name));
                Upstream::build(u, before)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let oauth = AuthorizationServer::new(config.clone(), verifier.clone(), store.clone(), metrics.clone(), previous.map(|p| &p.oauth));
        let route_metrics = config.routes.routes().iter().map(|r| metrics.route_metrics(&r.name)).collect();
        let unmatched_metrics = metrics.route_metrics(UNMATCHED_LABEL);
        let partners: Vec<String> = config.clients.iter().map(|c| c.name.clone()).collect();
        let route_names: Vec<&str> = config.routes.routes().iter().map(|r| r.name.as_str()).collect();
        let partner_metrics = metrics.partner_metrics(&partners, &route_names);
        let limits = RequestLimits::new(
            &config.rate_limits,
            &config.quotas,
            partners,
            &route_names,
            matches!(config.store, crate::config::StoreConfig::Redis(_)),
            previous.map(|p| &p.limits),
        );
        let own_host = url::Url::parse(config.issuer.as_str())
            .ok()
            .and_then(|u| u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            }))
            .unwrap_or_else(|| "localhost".into());
        Ok(Gateway {
            config,
            route_metrics,
            unmatched_metrics,
            partner_metrics,
            limits,
            own_host,
            authorizer,
            verifier,
            oauth,
            upstreams,
            metrics,
            store,
        })
    }

    /// Ready to serve: every upstream has a healthy server, and the revocations are known.
    pub fn is_ready(&self) -> bool {
        self.upstreams.iter().all(|u| u.is_ready())
            && self.store_is_current()
            && self.verifier.external_issuers().is_none_or(|e| e.is_ready())
    }

    /// The store answers and this replica's revocation list is current.
    pub fn store_is_current(&self) -> bool {
        self.store.revocations().stale_since().is_none()
    }

    /// Refreshes the gauges computed on demand (called before each scrape).
    pub fn refresh_gauges(&self) {
        for issuer in self.verifier.external_issuers().map(|e| e.all()).unwrap_or_default() {
            issuer.refresh_gauges();
        }
        self.metrics.observe_signing_keys(&self.config.keys, std::time::SystemTime::now());
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

/// What lives as long as the process, and the gateway in force.
pub struct Shared {
    current: ArcSwap<Gateway>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub in_flight: Arc<InFlight>,
    /// The span exporter, when `tracing.otlp_endpoint` is set (fixed at start).
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// Woken whenever a gateway is installed (the health supervisor follows the upstreams).
    pub upstreams_changed: Notify,
}

impl Shared {
    /// Opens the configured store and builds the first gateway; the store's background task (if
    /// any) must be run by the server.
    pub fn open(config: Config) -> Result<(Arc<Shared>, Option<StoreTask>), String> {
        let metrics = Arc::new(Metrics::new());
        let (store, store_task) = crate::store::open(&config, metrics.clone())?;
        let telemetry = crate::telemetry::Telemetry::start(&config.tracing)?.map(Arc::new);
        let gateway = Gateway::build(config, store.clone(), metrics.clone(), None).map_err(|e| format!("cannot set up upstreams: {e}"))?;
        metrics.set_config_info(&gateway.config.hash);
        let shared = Shared {
            current: ArcSwap::from_pointee(gateway),
            metrics,
            store,
            in_flight: Arc::default(),
            telemetry,
            upstreams_changed: Notify::new(),
        };
        Ok((Arc::new(shared), store_task))
    }

    /// The gateway in force; a request holds it to its end.
    pub fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Puts `gateway` in force for every request that starts from now on.
    pub fn install(&self, gateway: Gateway) {
        self.metrics.set_config_info(&gateway.config.hash);
        self.current.store(Arc::new(gateway));
        self.upstreams_changed.notify_waiters();
    }
}
