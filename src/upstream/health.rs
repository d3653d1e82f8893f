//! Active health checks, observed: which servers have been checked at least once (so `/readyz`
//! does not call an upstream ready before anything was verified) and transitions logged.

use async_trait::async_trait;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The servers of one upstream that have been checked at least once (servers come and go with
/// reloads; the set only grows, by the servers configured over the process's life).
#[derive(Default)]
pub struct CheckedServers {
    servers: Mutex<HashSet<SocketAddr>>,
}

impl CheckedServers {
    fn mark(&self, addr: &SocketAddr) {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).insert(*addr);
    }

    pub fn was_checked(&self, addr: &SocketAddr) -> bool {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).contains(addr)
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
