//! Assembles the Pingora server from a validated config and runs it until SIGTERM/SIGINT.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::gateway::Shared;
use crate::reload::{ReloadOnHangup, Reloader};
use crate::upstream::supervisor::HealthSupervisor;
use crate::proxy::Proxy;
use crate::store::StoreTask;
use pingora::services::background::{background_service, BackgroundService};
use pingora::server::ShutdownWatch;
use async_trait::async_trait;
use crate::downstream::{ConnectionGuard, GuardedProxy};
use pingora::server::configuration::ServerConf;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::services::listening::Service;
use crate::gateway::InFlight;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(String),
    #[error("cannot set up TLS on {addr}: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Issuer(String),
}

/// Bytes Pingora buffers of each client connection's reads.
const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;

/// How long the in-flight count must stay at zero before the drain counts as done; covers a
/// connection accepted just before the listener closed whose request is still being read.
const DRAINED_FOR: Duration = Duration::from_millis(150);

/// How long idle keep-alive connections are kept open once shutdown begins: a client that sends
/// its next request meanwhile gets an answer (with `Connection: close`) instead of a connection
/// closed under it.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// SIGTERM and SIGINT drain gracefully; SIGQUIT hands the listening sockets to a process
/// started with `--upgrade`, then drains. A second signal exits at once.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit()))
        else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        let (name, kind) = tokio::select! {
            _ = term.recv() => ("SIGTERM", ShutdownSignal::GracefulTerminate),
            _ = int.recv() => ("SIGINT", ShutdownSignal::GracefulTerminate),
            _ = quit.recv() => ("SIGQUIT", ShutdownSignal::GracefulUpgrade),
        };
        match kind {
            ShutdownSignal::GracefulUpgrade => tracing::info!(
                signal = name,
                "graceful upgrade: handing the listening sockets to the new process, then finishing in-flight requests"
            ),
            _ => tracing::info!(signal = name, "shutting down gracefully: no new connections, finishing in-flight requests"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
                _ = quit.recv() => {},
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
        kind
    }
}

/// Ends the process once shutdown has begun and the drain is done: no request in flight, and
/// either no client connection left or [`DRAIN_LINGER`] passed (idle keep-alive connections
/// are served one more request, answered with `Connection: close`, meanwhile). Pingora alone
/// would wait the whole grace period.
struct Drain {
    in_flight: Arc<InFlight>,
    guard: Arc<ConnectionGuard>,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        tracing::info!(in_flight = self.in_flight.count(), connections = self.guard.open_connections(), "draining");
        let began = Instant::now();
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let lingering = self.guard.open_connections() > 0 && began.elapsed() < DRAIN_LINGER;
            if self.in_flight.count() > 0 || lingering {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DRAINED_FOR {
                if let Some(telemetry) = &self.telemetry {
                    // the exporter blocks on its HTTP call: off the runtime's threads
                    let telemetry = telemetry.clone();
                    let _ = tokio::task::spawn_blocking(move || telemetry.flush()).await;
                }
                tracing::info!("all in-flight requests finished; oada-gateway stopped");
                std::process::exit(0);
            }
        }
    }
}

/// Runs the store's task (the Redis revocation mirror) until shutdown.
struct StoreService(std::sync::Mutex<Option<StoreTask>>);

#[async_trait]
impl BackgroundService for StoreService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let task = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            tokio::select! {
                _ = task => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Adds this replica's rate-limit and quota counts to the shared ones every `interval`.
struct RateLimitSync {
    shared: Arc<Shared>,
    interval: Duration,
}

#[async_trait]
impl BackgroundService for RateLimitSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let gateway = self.shared.current();
                    gateway.limits.sync(&*self.shared.store, crate::ratelimit::requests::Now::current()).await;
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

/// Fails early, with the key to fix, when an address cannot be bound.
fn probe_bind(key: &'static str, addr: SocketAddr) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| StartError::Bind { key, addr, source })
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Raises the open-file limit to the hard limit (as nginx's worker_rlimit_nofile does) and warns
/// when it cannot hold `max_connections` client connections with an upstream connection each.
fn raise_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let needed = (max_connections as u64).saturating_mul(2).saturating_add(256);
    if (limit.rlim_cur as u64) < needed {
        tracing::warn!(
            open_files = limit.rlim_cur as u64,
            needed,
            "the open-file limit is below 2 x server.max_connections + 256; raise `ulimit -n` or lower server.max_connections"
        );
    }
}

/// How the process starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartMode {
    /// Take the listening sockets over from a running process (graceful upgrade) instead of
    /// binding them.
    pub upgrade: bool,
}

/// Runs the gateway; returns once it has shut down.
pub fn run(config: Config, mode: StartMode) -> Result<(), StartError> {
    if !mode.upgrade {
        probe_bind("listen", config.listen)?;
        probe_bind("admin_listen", config.admin_listen)?;
    }
    raise_file_limit(config.server.downstream.max_connections);
    let file = config.file.clone();
    let (shared, store_task) = Shared::open(config).map_err(StartError::Store)?;
    let gateway = shared.current();
    if let Some(external) = gateway.verifier.external_issuers() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Store(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(external.fetch_all()).map_err(StartError::Issuer)?;
    }
    let cfg = &gateway.config;

    let conf = ServerConf {
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(whole_seconds(cfg.server.grace_period)),
        graceful_shutdown_timeout_seconds: Some(whole_seconds(cfg.server.graceful_shutdown_timeout)),
        upstream_keepalive_pool_size: cfg.server.upstream_keepalive_pool_size,
        upgrade_sock: cfg.server.upgrade_socket.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let options = Opt {
        upgrade: mode.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(options), conf);
    if mode.upgrade {
        tracing::info!(socket = %cfg.server.upgrade_socket.display(), "waiting for the running process to hand over its listening sockets (send it SIGQUIT)");
    }
    server.bootstrap();

    let guard = Arc::new(ConnectionGuard::new(cfg.server.downstream.clone(), shared.metrics.clone()));
    let http = pingora::proxy::http_proxy(&server.configuration, Proxy::new(shared.clone()));
    let mut proxy = Service::new("oada-gateway proxy".to_string(), GuardedProxy::new(http, guard.clone()));
    // Pingora buffers 64 KiB of reads per connection by default; request heads are bounded far
    // lower (server.max_request_header_bytes), and larger body reads bypass the buffer anyway.
    let mut endpoint = ListenerConfig::tcp(cfg.listen.to_string())
        .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER_BYTES));
    if let Some(tls) = &cfg.tls {
        let settings = TlsSettings::intermediate(&tls.cert_file.to_string_lossy(), &tls.key_file.to_string_lossy())
            .map_err(|e| StartError::Tls {
                addr: cfg.listen,
                reason: e.to_string(),
            })?;
        endpoint = endpoint.tls(settings);
    }
    proxy.add_listener(endpoint);
    let reloader = Arc::new(Reloader::new(shared.clone(), file));
    let mut admin = Service::new("oada-gateway admin".to_string(), AdminApp::new(shared.clone(), reloader.clone()));
    admin.add_tcp(&cfg.admin_listen.to_string());
    admin.threads = Some(1);

    tracing::info!(
        listen = %cfg.listen,
        admin = %cfg.admin_listen,
        issuer = cfg.issuer.as_str(),
        routes = cfg.routes.len(),
        upstreams = cfg.upstreams.len(),
        clients = cfg.clients.len(),
        tls = cfg.tls.is_some(),
        config = %cfg.hash,
        "oada-gateway starting"
    );
    drop(gateway);
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service("health checks", HealthSupervisor::new(shared.clone())));
    server.add_service(background_service("reload on SIGHUP", ReloadOnHangup(reloader)));
    server.add_service(background_service("issuer keys", crate::issuers::KeyRefresher::new(shared.clone())));
    server.add_service(background_service(
        "drain",
        Drain {
            in_flight: shared.in_flight.clone(),
            guard,
            telemetry: shared.telemetry.clone(),
        },
    ));
    if let crate::config::StoreConfig::Redis(redis) = &shared.current().config.store {
        server.add_service(background_service(
            "rate-limit sync",
            RateLimitSync {
                shared: shared.clone(),
                interval: redis.rate_limit_sync,
            },
        ));
    }
    if let Some(task) = store_task {
        server.add_service(background_service("store", StoreService(std::sync::Mutex::new(Some(task)))));
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    tracing::info!("oada-gateway stopped");
    Ok(())
}
