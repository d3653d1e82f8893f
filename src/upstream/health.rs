//! Active health checks, observed: which servers have been checked at least once (so `/readyz`
//! does not call an upstream ready before anything was verified) and transitions logged.

use async_trait::async_trait;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Per-server "checked at least once" flags for one upstream.
pub struct CheckedServers {
    servers: Vec<(SocketAddr, AtomicBool)>,
}

impl CheckedServers {
    pub fn new(servers: &[SocketAddr], initially: bool) -> Self {
        CheckedServers {
            servers: servers
                .iter()
                .map(|s| (*s, AtomicBool::new(initially)))
                .collect(),
        }
    }

    fn mark(&self, addr: &SocketAddr) {
        if let Some((_, flag)) = self.servers.iter().find(|(a, _)| a == addr) {
            flag.store(true, Ordering::Release);
        }
    }

    pub fn was_checked(&self, addr: &SocketAddr) -> bool {
        self.servers
            .iter()
            .find(|(a, _)| a == addr)
            .is_some_and(|(_, f)| f.load(Ordering::Acquire))
    }
}

/// Wraps Pingora's TCP/HTTP check to record that a server was checked and log health changes.
pub struct ObservedCheck {
    pub upstream: String,
    pub inner: Box<dyn HealthCheck + Send + Sync>,
    pub checked: std::sync::Arc<CheckedServers>,
}

#[async_trait]
impl HealthCheck for ObservedCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let result = self.inner.check(target).await;
        if let Some(addr) = target.addr.as_inet() {
            self.checked.mark(addr);
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if healthy {
            tracing::info!(upstream = %self.upstream, server = %target.addr, "upstream server is healthy again");
        } else {
            tracing::warn!(upstream = %self.upstream, server = %target.addr, "upstream server failed its health check");
        }
        self.inner.health_status_change(target, healthy).await;
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}
