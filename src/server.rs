//! Assembles the Pingora server from a validated config and runs it until SIGTERM/SIGINT.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::proxy::Proxy;
use crate::store::StoreTask;
use pingora::services::background::{background_service, BackgroundService};
use pingora::server::ShutdownWatch;
use async_trait::async_trait;
use crate::downstream::{ConnectionGuard, GuardedProxy};
use pingora::server::configuration::ServerConf;
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
}

/// SIGTERM and SIGINT both drain gracefully: the listeners close at once, in-flight requests
/// finish, and the process exits as soon as none is left, or when the grace period ends, whichever
/// comes first (Pingora alone always waits the whole period). A second signal exits at once.
struct GracefulSignals {
    in_flight: Arc<InFlight>,
}

/// Bytes Pingora buffers of each client connection's reads.
const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;

/// How long the in-flight count must stay at zero before the drain counts as done; covers a
/// connection accepted just before the listener closed whose request is still being read.
const DRAINED_FOR: Duration = Duration::from_millis(150);

#[async_trait]
impl ShutdownSignalWatch for GracefulSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            in_flight = self.in_flight.count(),
            "shutting down gracefully: no new connections, finishing in-flight requests"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let mut idle_since: Option<Instant> = None;
            loop {
                tokio::time::sleep(Duration::from_millis(25)).await;
                if in_flight.count() > 0 {
                    idle_since = None;
                    continue;
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= DRAINED_FOR {
                    tracing::info!("all in-flight requests finished; oada-gateway stopped");
                    std::process::exit(0);
                }
            }
        });
        ShutdownSignal::GracefulTerminate
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

/// Runs the gateway; returns once it has shut down.
pub fn run(config: Config) -> Result<(), StartError> {
    probe_bind("listen", config.listen)?;
    probe_bind("admin_listen", config.admin_listen)?;
    raise_file_limit(config.server.downstream.max_connections);
    let (gateway, health_services, store_task) = Gateway::build(config).map_err(StartError::Store)?;
    let cfg = &gateway.config;

    let conf = ServerConf {
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(whole_seconds(cfg.server.grace_period)),
        graceful_shutdown_timeout_seconds: Some(whole_seconds(cfg.server.graceful_shutdown_timeout)),
        upstream_keepalive_pool_size: cfg.server.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let guard = Arc::new(ConnectionGuard::new(cfg.server.downstream.clone(), gateway.metrics.clone()));
    let http = pingora::proxy::http_proxy(&server.configuration, Proxy::new(gateway.clone()));
    let mut proxy = Service::new("oada-gateway proxy".to_string(), GuardedProxy::new(http, guard));
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
    let mut admin = Service::new("oada-gateway admin".to_string(), AdminApp::new(gateway.clone()));
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
        "oada-gateway starting"
    );
    server.add_service(proxy);
    server.add_service(admin);
    for service in health_services {
        server.add_service(service);
    }
    if let Some(task) = store_task {
        server.add_service(background_service("store", StoreService(std::sync::Mutex::new(Some(task)))));
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(GracefulSignals {
            in_flight: gateway.in_flight.clone(),
        }),
    });
    tracing::info!("oada-gateway stopped");
    Ok(())
}
