//! Runs the health checks of the upstreams in the running config: one loop per health registry,
//! started when a config brings a new one and stopped when no config in force uses it any more.

use super::HealthChecks;
use crate::gateway::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub struct HealthSupervisor {
    shared: Arc<Shared>,
}

impl HealthSupervisor {
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthSupervisor { shared }
    }
}

/// A running check loop and the registry it checks (kept alive while the loop runs).
struct Running {
    checks: Arc<HealthChecks>,
    task: JoinHandle<()>,
}

#[async_trait]
impl BackgroundService for HealthSupervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running: HashMap<usize, Running> = HashMap::new();
        loop {
            // registered before the config is read: a swap after this point wakes the loop
            let changed = self.shared.upstreams_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let gateway = self.shared.current();
            let mut wanted: HashMap<usize, Arc<HealthChecks>> = HashMap::new();
            for upstream in &gateway.upstreams {
                if let Some(checks) = upstream.health_checks() {
                    wanted.insert(Arc::as_ptr(checks) as usize, checks.clone());
                }
            }
            drop(gateway);
            running.retain(|id, r| {
                let keep = wanted.contains_key(id);
                if !keep {
                    r.task.abort();
                }
                keep
            });
            for (id, checks) in wanted {
                running.entry(id).or_insert_with(|| {
                    let service = checks.service();
                    let watch = shutdown.clone();
                    Running {
                        task: tokio::spawn(async move { service.start(watch).await }),
                        checks,
                    }
                });
            }
            tokio::select! {
                _ = &mut changed => {}
                closed = shutdown.changed() => {
                    if closed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        for (_, r) in running {
            r.task.abort();
            drop(r.checks);
        }
    }
}
