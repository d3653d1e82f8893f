//! The client side of the proxy's connections: what holds before and between requests.
//!
//! [`GuardedProxy`] is the Pingora application the proxy listener runs. For each connection it
//! admits (or refuses, with 503) against the total and per-address connection limits, wraps the
//! stream in a [`stream::GuardedStream`] (header budget and deadlines, keep-alive idle timeout,
//! body deadline) and serves HTTP/1.x requests one after another through Pingora's proxy, telling
//! the stream where each request starts. HTTP/2 connections (TLS with ALPN h2) go to Pingora
//! directly; h2 bounds header size itself.

pub mod stream;

use crate::config::DownstreamConfig;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use stream::{ConnState, GuardedStream};
use tokio::io::AsyncWriteExt;

/// What a connection is counted under for `max_connections_per_address`: an IPv4 address, or the
/// /64 prefix of an IPv6 address (one host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    AddressKey::V6Prefix(prefix)
                }
            },
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            AddressKey::V6Prefix(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
        }
    }
}

const SHARDS: usize = 16;

/// Counts open client connections, in total and per address, and refuses those over the limits.
pub struct ConnectionGuard {
    config: DownstreamConfig,
    metrics: Arc<Metrics>,
    open: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
    per_address: Box<[Mutex<HashMap<AddressKey, usize>>]>,
}

/// One admitted connection; dropping it gives its slots back.
pub struct Admission {
    guard: Arc<ConnectionGuard>,
    address: Option<AddressKey>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.guard.open.fetch_sub(1, Ordering::Relaxed);
        self.guard.metrics.downstream_connections.dec();
        if let Some(key) = self.address {
            let mut table = self.guard.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = table.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    table.remove(&key);
                }
            }
        }
    }
}

impl ConnectionGuard {
    pub fn new(config: DownstreamConfig, metrics: Arc<Metrics>) -> Self {
        ConnectionGuard {
            config,
            metrics,
            open: AtomicUsize::new(0),
            hasher: Default::default(),
            per_address: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &AddressKey) -> &Mutex<HashMap<AddressKey, usize>> {
        &self.per_address[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn max_header_bytes(&self) -> usize {
        self.config.max_request_header_bytes
    }

    pub fn count_close(&self, reason: &str) {
        self.metrics.downstream_closes.with_label_values(&[reason]).inc();
    }

    /// Admits a connection from `peer`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Admission, &'static str> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.config.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err("too_many_connections");
        }
        let address = peer.map(AddressKey::of);
        if let Some(key) = address {
            let mut table = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
            let n = table.entry(key).or_insert(0);
            if *n >= self.config.max_connections_per_address {
                drop(table);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err("too_many_connections_per_address");
            }
            *n += 1;
        }
        self.metrics.downstream_connections.inc();
        Ok(Admission {
            guard: self.clone(),
            address,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A complete HTTP/1.1 response with the standard JSON error body that closes the connection;
/// written straight to the socket where no Pingora session exists (yet).
pub fn raw_response(status: u16, description: &str) -> Bytes {
    let reason = match status {
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let error = match status {
        503 => "temporarily_unavailable",
        _ => "invalid_request",
    };
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    let retry = if status == 503 { "Retry-After: 1\r\n" } else { "" };
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{retry}Connection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// The handle of a connection's [`ConnState`] handed to the proxy with each request (as Pingora's
/// connection user context).
#[derive(Clone)]
pub struct ConnHandle(pub Arc<ConnState>);

/// The proxy listener's application: connection limits and guarded streams around Pingora's
/// HTTP proxy.
pub struct GuardedProxy {
    proxy: Arc<HttpProxy<Proxy>>,
    guard: Arc<ConnectionGuard>,
}

impl GuardedProxy {
    pub fn new(proxy: HttpProxy<Proxy>, guard: Arc<ConnectionGuard>) -> Self {
        GuardedProxy {
            proxy: Arc::new(proxy),
            guard,
        }
    }

    fn new_session(&self, stream: Stream, conn: &Arc<ConnState>) -> ServerSession {
        let config = &self.guard.config;
        let mut session = ServerSession::new_http1(stream);
        // Pingora's keep-alive timer restarts on each read; ours (in the stream) are the real
        // deadlines, so Pingora's must never fire first.
        let pingora_keepalive = config.keepalive_timeout.max(config.header_timeout).as_secs() + 1;
        session.set_keepalive(Some(pingora_keepalive));
        session.set_write_timeout(Some(config.send_timeout));
        session.set_pipelining_enabled(true);
        session.set_connection_user_context(Some(Box::new(ConnHandle(conn.clone()))));
        session
    }
}

#[async_trait]
impl ServerApp for GuardedProxy {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet().map(|a| a.ip())));
        let _admission = match self.guard.admit(peer) {
            Ok(admission) => admission,
            Err(reason) => {
                self.guard.count_close(reason);
                tracing::warn!(reason, client = ?peer, "client connection refused");
                let description = match reason {
                    "too_many_connections" => "the gateway is at its connection limit; retry shortly",
                    _ => "too many connections from this address; close some or retry shortly",
                };
                let _ = stream.write_all(&raw_response(503, description)).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return None;
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let config = &self.guard.config;
        let conn = Arc::new(ConnState::new(config.header_timeout, config.keepalive_timeout, config.body_timeout));
        let stream: Stream = Box::new(GuardedStream::new(stream, conn.clone(), self.guard.clone()));
        let mut session = self.new_session(stream, &conn);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        session.set_keepalive_reuses_remaining(Some(config.keepalive_requests.saturating_sub(1)));
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, persistent)) = result.map(|r| r.consume()) {
            conn.await_next_head();
            let mut session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent {
                persistent.apply_to_session(&mut session);
            }
            let config = &self.guard.config;
            session.set_write_timeout(Some(config.send_timeout));
            session.set_connection_user_context(Some(Box::new(ConnHandle(conn.clone()))));
            if *shutdown.borrow() {
                // draining: this request is answered, with `Connection: close`
                session.set_keepalive(None);
            }
            result = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        // The listeners are closed. Connections waiting for their next request stay open a
        // moment (see `DRAIN_LINGER`), so that a client sending one right now gets its answer;
        // then Pingora closes the idle ones.
        if self.guard.open_connections() > 0 {
            tokio::time::sleep(crate::server::DRAIN_LINGER).await;
        }
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_prefix_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(AddressKey::of(mapped), AddressKey::of("10.0.0.1".parse().unwrap()));
    }

    fn guard(total: usize, per_address: usize) -> Arc<ConnectionGuard> {
        let config = DownstreamConfig {
            max_connections: total,
            max_connections_per_address: per_address,
            max_request_header_bytes: 32 * 1024,
            max_request_header_line_bytes: 16 * 1024,
            header_timeout: std::time::Duration::from_secs(10),
            keepalive_timeout: std::time::Duration::from_secs(60),
            keepalive_requests: 1000,
            body_timeout: std::time::Duration::from_secs(60),
            send_timeout: std::time::Duration::from_secs(60),
            allow_trace: false,
            underscores_in_headers: false,
        };
        Arc::new(ConnectionGuard::new(config, Arc::new(Metrics::new())))
    }

    #[test]
    fn admission_limits_and_release() {
        let g = guard(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = g.admit(Some(a)).unwrap();
        let _second = g.admit(Some(a)).unwrap();
        assert_eq!(g.admit(Some(a)).err(), Some("too_many_connections_per_address"));
        let _third = g.admit(Some(b)).unwrap();
        assert_eq!(g.admit(Some(b)).err(), Some("too_many_connections"));
        drop(first);
        assert_eq!(g.open_connections(), 2);
        assert!(g.admit(Some(a)).is_ok(), "a released slot is usable again");
    }
}
