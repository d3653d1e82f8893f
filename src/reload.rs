//! Live reload (`SIGHUP`, `POST /reload` on the admin listener): the config file and everything
//! it names are read and validated again beside the running gateway; on success the next
//! gateway is built (keeping caches, health state and counts where their settings are
//! unchanged) and swapped in atomically, on any error the running one stays. Settings the
//! process took at start (listeners, TLS, threads, connection limits, the store) are reported as
//! needing a restart and left as they were.

use crate::config::{Config, ConfigErrors};
use crate::gateway::{Gateway, Shared};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What a successful reload put in force.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// [`Config::hash`] of the file as loaded.
    pub hash: String,
    /// The hash differs from the one in force before.
    pub changed: bool,
    /// Keys whose new values were not applied: they take a restart (or a graceful upgrade).
    pub needs_restart: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file (or one it names) is invalid: the running config stays.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The config is valid but what it describes could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl ReloadError {
    /// One message per problem, as `check` prints them.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
            ReloadError::Setup(why) => vec![why.clone()],
        }
    }
}

pub struct Reloader {
    shared: Arc<Shared>,
    file: PathBuf,
    /// One reload at a time: each builds on the gateway the previous one installed.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>, file: PathBuf) -> Self {
        Reloader {
            shared,
            file,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads the config file; returns once the new config is in force (or refused).
    pub async fn reload(&self, trigger: &'static str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.busy.lock().await;
        let result = self.load_and_install().await;
        let metrics = &self.shared.metrics;
        match &result {
            Ok(done) => {
                metrics.config_reloads.with_label_values(&["ok"]).inc();
                if !done.needs_restart.is_empty() {
                    tracing::warn!(
                        settings = %done.needs_restart.join(", "),
                        "these settings changed but take a restart (or a graceful upgrade) to apply; they keep their running values"
                    );
                }
                tracing::info!(trigger, hash = %done.hash, changed = done.changed, "config reloaded");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                for message in e.messages() {
                    tracing::error!(trigger, "config reload refused: {message}");
                }
                tracing::error!(trigger, file = %self.file.display(), "config reload refused; the running config stays");
            }
        }
        result
    }

    async fn load_and_install(&self) -> Result<Reloaded, ReloadError> {
        let file = self.file.clone();
        let running = self.shared.current();
        let shared = self.shared.clone();
        // reading files and parsing keys blocks: keep it off the proxy's threads
        tokio::task::spawn_blocking(move || {
            let loaded = Config::load(&file).map_err(ReloadError::Invalid)?;
            let (config, needs_restart) = keep_restart_only(loaded, &running.config);
            let hash = config.hash.clone();
            let next = Gateway::build(config, shared.store.clone(), shared.metrics.clone(), Some(&running))
                .map_err(|e| ReloadError::Setup(format!("cannot set up upstreams: {e}")))?;
            let changed = hash != running.config.hash;
            drop(running);
            shared.install(next);
            Ok(Reloaded {
                hash,
                changed,
                needs_restart,
            })
        })
        .await
        .map_err(|e| ReloadError::Setup(format!("the reload failed: {e}")))?
    }
}

/// Puts the running values of the settings that cannot change live into `new`, and names those
/// that differ.
fn keep_restart_only(mut new: Config, running: &Config) -> (Config, Vec<&'static str>) {
    let mut differ = Vec::new();
    macro_rules! keep {
        ($($key:literal => $($field:ident).+),* $(,)?) => {$(
            if new.$($field).+ != running.$($field).+ {
                differ.push($key);
                new.$($field).+ = running.$($field).+.clone();
            }
        )*};
    }
    keep! {
        "listen" => listen,
        "admin_listen" => admin_listen,
        "tls" => tls,
        "server.threads" => server.threads,
        "server.work_stealing" => server.work_stealing,
        "server.grace_period" => server.grace_period,
        "server.graceful_shutdown_timeout" => server.graceful_shutdown_timeout,
        "server.upstream_keepalive_pool_size" => server.upstream_keepalive_pool_size,
        "server.upgrade_socket" => server.upgrade_socket,
        "server (connection limits and timeouts)" => server.downstream,
        "store" => store,
        "tracing" => tracing,
    }
    (new, differ)
}

/// Reloads on `SIGHUP`.
pub struct ReloadOnHangup(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP; reload with POST /reload on the admin listener");
            return;
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    // the outcome is logged and counted by the reload itself
                    let _ = self.0.reload("SIGHUP").await;
                }
                closed = shutdown.changed() => {
                    if closed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
