//! `store:`: where the gateway's state lives (in memory, or Redis / Redis Cluster shared by every
//! replica) and what the proxy does while the shared store is away.

use super::{secs, Builder};
use crate::config::raw::RawStore;
use crate::config::*;

impl Builder {
    pub(super) fn store(&mut self, raw: Option<&RawStore>) -> StoreConfig {
        const KEY: &str = "store";
        let Some(raw) = raw else {
            return StoreConfig::Memory;
        };
        let servers = match raw.kind.as_deref() {
            None | Some("memory") => {
                if raw.url.is_some() || !raw.nodes.is_empty() {
                    self.diag.error(format!("{KEY}.type"), "url and nodes need type: redis or redis_cluster");
                }
                return StoreConfig::Memory;
            }
            Some("redis") => match &raw.url {
                Some(url) => {
                    self.redis_url(&format!("{KEY}.url"), url);
                    RedisServers::Single(url.clone())
                }
                None => {
                    self.diag.error(format!("{KEY}.url"), "type: redis needs url, e.g. redis://127.0.0.1:6379/0");
                    RedisServers::Single(String::new())
                }
            },
            Some("redis_cluster") => {
                if raw.nodes.is_empty() {
                    self.diag.error(format!("{KEY}.nodes"), "type: redis_cluster needs nodes, e.g. [redis://10.0.0.1:7000]");
                }
                for (i, node) in raw.nodes.iter().enumerate() {
                    self.redis_url(&format!("{KEY}.nodes[{i}]"), node);
                }
                RedisServers::Cluster(raw.nodes.clone())
            }
            Some(other) => {
                self.diag.error(format!("{KEY}.type"), format!("`{other}` is not a store type; expected memory, redis or redis_cluster"));
                return StoreConfig::Memory;
            }
        };
        let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| "oada-gateway:".into());
        if key_prefix.contains(['{', '}']) || key_prefix.len() > 64 {
            self.diag.error(format!("{KEY}.key_prefix"), "at most 64 characters, without { or } (Redis Cluster hash tags)");
        }
        let on_outage = match raw.on_outage.as_deref() {
            None | Some("fail_closed") => OutagePolicy::FailClosed,
            Some("serve_cached") => OutagePolicy::ServeCached,
            Some(other) => {
                self.diag.error(format!("{KEY}.on_outage"), format!("`{other}` is not a policy; expected fail_closed or serve_cached"));
                OutagePolicy::FailClosed
            }
        };
        let config = RedisConfig {
            servers,
            key_prefix,
            username: raw.username.clone().filter(|u| !u.is_empty()),
            password: raw.password.clone().filter(|p| !p.is_empty()),
            connect_timeout: secs(raw.connect_timeout, Duration::from_secs(2)),
            command_timeout: secs(raw.command_timeout, Duration::from_millis(500)),
            pool_size: raw.pool_size.unwrap_or(4),
            on_outage,
            max_stale: secs(raw.max_stale, Duration::from_secs(30)),
            rate_limit_sync: secs(raw.rate_limit_sync, Duration::from_millis(100)),
        };
        if config.rate_limit_sync < Duration::from_millis(10) || config.rate_limit_sync > Duration::from_secs(10) {
            self.diag.error(format!("{KEY}.rate_limit_sync"), "must be between 10ms and 10s (e.g. 100ms)");
        }
        if config.pool_size == 0 || config.pool_size > 64 {
            self.diag.error(format!("{KEY}.pool_size"), "must be between 1 and 64");
        }
        for (k, d) in [("connect_timeout", config.connect_timeout), ("command_timeout", config.command_timeout)] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
                self.diag.error(format!("{KEY}.{k}"), "must be between 10ms and 60s");
            }
        }
        StoreConfig::Redis(config)
    }

    fn redis_url(&mut self, key: &str, url: &str) {
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {}
            _ => self.diag.error(key, format!("`{url}` is not a redis:// or rediss:// URL")),
        }
    }
}
