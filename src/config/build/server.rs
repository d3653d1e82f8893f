//! `server:` (process, connections, timeouts) and `limits:` (per-address limits on the hosted
//! endpoints).

use super::{secs, Builder};
use crate::config::raw::{RawLimits, RawRateLimit, RawServer};
use crate::config::{DownstreamConfig, EndpointLimits, ServerConfig};
use crate::ratelimit::{Quota, Rate};
use std::time::Duration;

/// Defaults close to nginx's and Envoy's (see README, "Limits and hardening").
const MAX_CONNECTIONS: usize = 10_000;
const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
const MAX_HEADER_BYTES: usize = 32 * 1024;
const MAX_HEADER_LINE_BYTES: usize = 16 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
const KEEPALIVE_REQUESTS: u32 = 1000;
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Where a running process hands its listening sockets to its successor (`--upgrade`).
const UPGRADE_SOCKET: &str = "/tmp/oada-gateway-upgrade.sock";

impl Builder {
    pub(super) fn server(&mut self, raw: &RawServer) -> ServerConfig {
        let default_threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let downstream = DownstreamConfig {
            max_connections: raw.max_connections.unwrap_or(MAX_CONNECTIONS),
            max_connections_per_address: raw.max_connections_per_address.unwrap_or(MAX_CONNECTIONS_PER_ADDRESS),
            max_request_header_bytes: raw.max_request_header_bytes.map_or(MAX_HEADER_BYTES, |s| s.0),
            max_request_header_line_bytes: raw.max_request_header_line_bytes.map_or(MAX_HEADER_LINE_BYTES, |s| s.0),
            header_timeout: secs(raw.header_timeout, HEADER_TIMEOUT),
            keepalive_timeout: secs(raw.keepalive_timeout, KEEPALIVE_TIMEOUT),
            keepalive_requests: raw.keepalive_requests.unwrap_or(KEEPALIVE_REQUESTS),
            body_timeout: secs(raw.body_timeout, BODY_TIMEOUT),
            send_timeout: secs(raw.send_timeout, SEND_TIMEOUT),
            allow_trace: raw.allow_trace.unwrap_or(false),
            underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
        };
        let s = ServerConfig {
            threads: raw.threads.unwrap_or(default_threads),
            work_stealing: raw.work_stealing.unwrap_or(true),
            grace_period: secs(raw.grace_period, Duration::from_secs(30)),
            graceful_shutdown_timeout: secs(raw.graceful_shutdown_timeout, Duration::from_secs(5)),
            upstream_keepalive_pool_size: raw.upstream_keepalive_pool_size.unwrap_or(128),
            access_log: raw.access_log.unwrap_or(true),
            upgrade_socket: raw
                .upgrade_socket
                .as_deref()
                .map_or_else(|| std::path::PathBuf::from(UPGRADE_SOCKET), |p| self.resolve(p)),
            downstream,
        };
        if s.threads == 0 || s.threads > 1024 {
            self.diag.error("server.threads", "must be between 1 and 1024");
        }
        let d = &s.downstream;
        if d.max_connections == 0 {
            self.diag.error("server.max_connections", "must be at least 1 (e.g. 10000)");
        }
        if d.max_connections_per_address == 0 || d.max_connections_per_address > d.max_connections {
            self.diag.error(
                "server.max_connections_per_address",
                "must be between 1 and server.max_connections (e.g. 256)",
            );
        }
        if !(1024..=1024 * 1024).contains(&d.max_request_header_bytes) {
            self.diag
                .error("server.max_request_header_bytes", "must be between 1KiB and 1MiB (e.g. 32KiB)");
        }
        if d.max_request_header_line_bytes < 256 || d.max_request_header_line_bytes > d.max_request_header_bytes {
            self.diag.error(
                "server.max_request_header_line_bytes",
                "must be between 256B and server.max_request_header_bytes (e.g. 16KiB)",
            );
        }
        for (key, value) in [
            ("server.header_timeout", d.header_timeout),
            ("server.keepalive_timeout", d.keepalive_timeout),
            ("server.body_timeout", d.body_timeout),
            ("server.send_timeout", d.send_timeout),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                self.diag.error(key, "must be between 100ms and 1h");
            }
        }
        if d.keepalive_requests == 0 {
            self.diag.error("server.keepalive_requests", "must be at least 1 (e.g. 1000)");
        }
        s
    }

    pub(super) fn limits(&mut self, raw: &RawLimits) -> EndpointLimits {
        let default_register = Quota {
            rate: Rate { count: 30, period: Duration::from_secs(60) },
            burst: 30,
        };
        let default_token = Quota {
            rate: Rate { count: 20, period: Duration::from_secs(1) },
            burst: 100,
        };
        let register = self.rate_limit("limits.register", raw.register.as_ref(), default_register);
        let token = self.rate_limit("limits.token", raw.token.as_ref(), default_token);
        let default_login = Quota {
            rate: Rate { count: 30, period: Duration::from_secs(60) },
            burst: 30,
        };
        let login = self.rate_limit("limits.login", raw.login.as_ref(), default_login);
        let max_tracked_addresses = raw.max_tracked_addresses.unwrap_or(100_000);
        if max_tracked_addresses < 100 {
            self.diag.error("limits.max_tracked_addresses", "must be at least 100 (e.g. 100000)");
        }
        EndpointLimits {
            register,
            token,
            login,
            max_tracked_addresses,
        }
    }

    /// A `{rate, burst}` setting: `None` when `rate: unlimited`.
    pub(super) fn rate_limit(&mut self, key: &str, raw: Option<&RawRateLimit>, default: Quota) -> Option<Quota> {
        let Some(raw) = raw else {
            return Some(default);
        };
        if raw.rate.trim() == "unlimited" {
            return None;
        }
        match Rate::parse(&raw.rate) {
            Ok(rate) => {
                let burst = raw.burst.unwrap_or_else(|| u32::try_from(rate.count).unwrap_or(u32::MAX).max(1));
                if burst == 0 {
                    self.diag.error(format!("{key}.burst"), "must be at least 1");
                }
                Some(Quota { rate, burst: burst.max(1) })
            }
            Err(e) => {
                self.diag.error(format!("{key}.rate"), format!("{e}; or `unlimited`"));
                None
            }
        }
    }
}
