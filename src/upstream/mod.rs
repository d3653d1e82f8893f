//! Upstream resource servers: round-robin over healthy servers, active health checks, and the
//! peer settings (timeouts, keep-alive) each request is forwarded with.

mod health;

use crate::config::{HealthCheckKind, UpstreamConfig};
use health::{CheckedServers, ObservedCheck};
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::services::background::{background_service, GenBackgroundService};
use std::net::SocketAddr;
use std::sync::Arc;

/// One upstream and its servers.
pub struct Upstream {
    pub config: UpstreamConfig,
    lb: Arc<LoadBalancer<RoundRobin>>,
    checked: Arc<CheckedServers>,
}

/// The health-check task of an upstream, to be run by the Pingora server.
pub type HealthService = GenBackgroundService<LoadBalancer<RoundRobin>>;

impl Upstream {
    /// Builds the upstream and, unless health checks are off, the service that runs them.
    pub fn build(config: &UpstreamConfig) -> std::io::Result<(Upstream, Option<HealthService>)> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(config.servers.iter().copied())?;
        let hc = &config.health_check;
        let checking = hc.kind != HealthCheckKind::None;
        let checked = Arc::new(CheckedServers::new(&config.servers, !checking));
        if checking {
            let inner: Box<dyn HealthCheck + Send + Sync> = match &hc.kind {
                HealthCheckKind::Http { path } => {
                    let mut check = HttpHealthCheck::new("localhost", false);
                    check.req.set_uri(
                        path.parse()
                            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?,
                    );
                    check.consecutive_success = hc.healthy_threshold;
                    check.consecutive_failure = hc.unhealthy_threshold;
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.read_timeout = Some(hc.timeout);
                    Box::new(check)
                }
                _ => {
                    let mut check = TcpHealthCheck::new();
                    check.consecutive_success = hc.healthy_threshold;
                    check.consecutive_failure = hc.unhealthy_threshold;
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check
                }
            };
            lb.set_health_check(Box::new(ObservedCheck {
                upstream: config.name.clone(),
                inner,
                checked: checked.clone(),
            }));
            lb.health_check_frequency = Some(hc.interval);
            lb.parallel_health_check = true;
        }
        let (lb, service) = if checking {
            let service = background_service(&format!("health check {}", config.name), lb);
            (service.task(), Some(service))
        } else {
            (Arc::new(lb), None)
        };
        Ok((
            Upstream {
                config: config.clone(),
                lb,
                checked,
            },
            service,
        ))
    }

    pub fn name(&self) -> &str {
        &self.config.name
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

    /// Each server and whether it is healthy: checked at least once and passing.
    pub fn servers_health(&self) -> Vec<(SocketAddr, bool)> {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| {
                let addr = *b.addr.as_inet()?;
                Some((addr, self.checked.was_checked(&addr) && self.lb.backends().ready(b)))
            })
            .collect()
    }

    /// Ready: at least one healthy server.
    pub fn is_ready(&self) -> bool {
        self.servers_health().iter().any(|(_, healthy)| *healthy)
    }
}
