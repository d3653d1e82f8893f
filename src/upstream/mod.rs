//! Upstream resource servers: round-robin over healthy servers, active health checks, and the
//! peer settings (timeouts, keep-alive) each request is forwarded with.
//!
//! An upstream's health state lives in a [`HealthChecks`] (a Pingora health registry) that
//! outlives config reloads: a reload that keeps an upstream's health-check settings hands the
//! same registry to the new server list, so servers in both lists keep their state and only new
//! ones start unchecked. The [`supervisor`] runs one check loop per registry in use.

mod health;
pub mod supervisor;

use crate::config::{HealthCheckConfig, HealthCheckKind, UpstreamConfig};
use futures_util::FutureExt;
use health::{CheckedServers, ObservedCheck};
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::lb::prelude::{HealthCheckService, HealthRegistry};
use std::net::SocketAddr;
use std::sync::Arc;

/// The active health checks of one upstream, shared by its successive server lists.
pub struct HealthChecks {
    pub config: HealthCheckConfig,
    registry: Arc<HealthRegistry>,
    checked: Arc<CheckedServers>,
}

impl HealthChecks {
    fn new(upstream: &str, config: &HealthCheckConfig) -> std::io::Result<HealthChecks> {
        let registry = Arc::new(HealthRegistry::new());
        let checked = Arc::new(CheckedServers::default());
        let inner: Box<dyn HealthCheck + Send + Sync> = match &config.kind {
            HealthCheckKind::Http { path } => {
                let mut check = HttpHealthCheck::new("localhost", false);
                check.req.set_uri(
                    path.parse()
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?,
                );
                check.consecutive_success = config.healthy_threshold;
                check.consecutive_failure = config.unhealthy_threshold;
                check.peer_template.options.connection_timeout = Some(config.timeout);
                check.peer_template.options.read_timeout = Some(config.timeout);
                Box::new(check)
            }
            _ => {
                let mut check = TcpHealthCheck::new();
                check.consecutive_success = config.healthy_threshold;
                check.consecutive_failure = config.unhealthy_threshold;
                check.peer_template.options.connection_timeout = Some(config.timeout);
                check
            }
        };
        registry.set_health_check(Box::new(ObservedCheck {
            upstream: upstream.to_string(),
            inner,
            checked: checked.clone(),
        }));
        Ok(HealthChecks {
            config: config.clone(),
            registry,
            checked,
        })
    }

    /// The loop that checks this upstream's servers every `interval`.
    pub fn service(&self) -> HealthCheckService {
        let mut service = HealthCheckService::new(self.registry.clone());
        service.health_check_frequency = Some(self.config.interval);
        service.parallel_health_check = true;
        service
    }
}

/// One upstream and its servers.
pub struct Upstream {
    pub config: UpstreamConfig,
    lb: LoadBalancer<RoundRobin>,
    /// `None`: health checks are off and every server counts as healthy.
    health: Option<Arc<HealthChecks>>,
}

impl Upstream {
    /// Builds the upstream for `config`; `previous` (the upstream of the same name in the config
    /// being replaced) is reused whole when nothing changed, and its health checks when their
    /// settings did not.
    pub fn build(config: &UpstreamConfig, previous: Option<&Arc<Upstream>>) -> std::io::Result<Arc<Upstream>> {
        if let Some(previous) = previous.filter(|p| p.config == *config) {
            return Ok(previous.clone());
        }
        let health = match config.health_check.kind {
            HealthCheckKind::None => None,
            _ => match previous.and_then(|p| p.health.as_ref()).filter(|h| h.config == config.health_check) {
                Some(shared) => Some(shared.clone()),
                None => Some(Arc::new(HealthChecks::new(&config.name, &config.health_check)?)),
            },
        };
        let discovery = Static::try_from_iter(config.servers.iter().copied())?;
        let backends = match &health {
            Some(h) => Backends::new_with_health_registry(discovery, h.registry.clone()),
            None => Backends::new(discovery),
        };
        let lb = LoadBalancer::<RoundRobin>::from_backends(backends);
        // static discovery answers at once; this publishes the servers (to the registry too)
        lb.update()
            .now_or_never()
            .ok_or_else(|| std::io::Error::other("static discovery did not answer at once"))?
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Arc::new(Upstream {
            config: config.clone(),
            lb,
            health,
        }))
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The health checks the supervisor must run for this upstream.
    pub fn health_checks(&self) -> Option<&Arc<HealthChecks>> {
        self.health.as_ref()
    }

    /// The next healthy server in round-robin order that is not in `exclude`.
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let backend = self.lb.select_with(b"", 256, |b, healthy| {
            healthy && b.addr.as_inet().is_some_and(|a| !exclude.contains(a))
        })?;
        backend.addr.as_inet().copied()
    }

    /// Is another healthy server available besides `exclude`?
    pub fn has_alternative(&self, exclude: &[SocketAddr]) -> bool {
        self.servers_health()
            .iter()
            .any(|(addr, healthy)| *healthy && !exclude.contains(addr))
    }

    /// The peer a request to `addr` is forwarded to, with this upstream's timeouts.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.config.connect_timeout);
        peer.options.read_timeout = Some(self.config.read_timeout);
        peer.options.write_timeout = Some(self.config.write_timeout);
        peer.options.idle_timeout = Some(self.config.idle_timeout);
        peer
    }

    /// Each server and whether it is healthy: checked at least once (when checks are on) and
    /// passing.
    pub fn servers_health(&self) -> Vec<(SocketAddr, bool)> {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| {
                let addr = *b.addr.as_inet()?;
                let checked = self.health.as_ref().is_none_or(|h| h.checked.was_checked(&addr));
                Some((addr, checked && self.lb.backends().ready(b)))
            })
            .collect()
    }

    /// Ready: at least one healthy server.
    pub fn is_ready(&self) -> bool {
        self.servers_health().iter().any(|(_, healthy)| *healthy)
    }
}
