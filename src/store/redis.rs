//! The shared store: Redis or Redis Cluster (the `redis` crate: multiplexed connections with
//! automatic reconnection, the async cluster client, pub/sub), so that every replica sees the same
//! registrations, used assertions, revocations, codes, refresh tokens, sessions, consents and
//! sign-in failures.
//!
//! Every key carries the configured prefix and an expiry. What must happen once is atomic: `SET
//! NX` for assertion ids and registrations, a Lua script for a code's use and for refresh-token
//! rotation (a family and its tokens share a Cluster hash tag, so the script touches one slot).
//! Every command is bounded by `command_timeout`; a store that does not answer is an error the
//! endpoints turn into 503, never a hang.
//!
//! Revocations go to a sorted set (member: the revoked key, score: its expiry) and are published
//! on a channel. [`RevocationMirror`] keeps this process's [`RevocationList`] current from that
//! channel and loads the whole set after every (re)connection, so the proxy checks revocations in
//! memory and never waits for Redis; while the mirror cannot be trusted, the list says since when,
//! and the proxy applies `store.on_outage`.

use super::{
    CodeGrant, CodeUse, CounterTotals, CounterUpdate, LoginFailures, PendingAuthorization, RefreshFamily, RefreshKey, RefreshUse, Registration, RevocationList,
    Revoked, Session, Store, StoreError,
};
use crate::config::{RedisConfig, RedisServers};
use crate::ids::unix_now;
use crate::metrics::Metrics;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell};

/// How often the mirror pings its subscription (a silent network loses no more than this).
const MIRROR_PING: Duration = Duration::from_secs(2);
/// Reconnection backoff of the mirror.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A command connection: one server, or the cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connections, made on first use (inside the runtime that uses them) and remade after failures.
enum Connections {
    /// `pool_size` multiplexed connections, used in turn.
    Single {
        client: redis::Client,
        pool: OnceCell<Vec<ConnectionManager>>,
        next: AtomicUsize,
        config: ConnectionManagerConfig,
        size: usize,
    },
    Cluster {
        client: ClusterClient,
        conn: Mutex<Option<ClusterConnection>>,
    },
}

impl Connections {
    async fn get(&self, connect_timeout: Duration) -> Result<Conn, StoreError> {
        match self {
            Connections::Single { client, pool, next, config, size } => {
                let pool = pool
                    .get_or_try_init(|| async {
                        (0..*size)
                            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let i = next.fetch_add(1, Ordering::Relaxed) % pool.len();
                Ok(Conn::Single(pool[i].clone()))
            }
            Connections::Cluster { client, conn } => {
                let mut slot = conn.lock().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let fresh = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Backend("connecting to the Redis Cluster timed out".into()))?
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                *slot = Some(fresh.clone());
                Ok(Conn::Cluster(fresh))
            }
        }
    }

    /// Forgets a cluster connection that failed (single-server connections heal themselves).
    async fn failed(&self) {
        if let Connections::Cluster { conn, .. } = self {
            *conn.lock().await = None;
        }
    }
}

fn connection_info(url: &str, config: &RedisConfig) -> Result<redis::ConnectionInfo, String> {
    let info = url.into_connection_info().map_err(|e| e.to_string())?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &config.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &config.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings))
}

/// Lua: marks a code used; `false` for an unknown code, else the grant and how often it was used.
const USE_CODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local used = redis.call('HINCRBY', KEYS[1], 'used', 1)
return {redis.call('HGET', KEYS[1], 'grant'), used}
";

/// Lua: rotates a refresh token (KEYS: family, token, new token; ARGV: now). Returns
/// {0} unknown or dead, {1, family json, new generation} rotated, {2, family json, current} reused.
const ROTATE_REFRESH: &str = r"
local gen = redis.call('GET', KEYS[2])
if not gen then return {0} end
local f = redis.call('HMGET', KEYS[1], 'current', 'revoked', 'expires_at', 'last_used', 'idle', 'json')
if not f[1] then return {0} end
local now = tonumber(ARGV[1])
if f[2] == '1' or now >= tonumber(f[3]) or now >= tonumber(f[4]) + tonumber(f[5]) then return {0} end
if gen ~= f[1] then
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return {2, f[6], f[1]}
end
local next = tonumber(f[1]) + 1
redis.call('HSET', KEYS[1], 'current', next, 'last_used', now)
redis.call('SET', KEYS[3], next, 'EXAT', tonumber(f[3]))
return {1, f[6], tostring(next)}
";

/// Lua: records a revocation in the sorted set (KEYS[1]) and keeps the set's own expiry at its
/// latest member's (ARGV: member, expiry).
const REVOKE: &str = r"
local exp = tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not old) or tonumber(old) < exp then redis.call('ZADD', KEYS[1], exp, ARGV[1]) end
local t = redis.call('EXPIRETIME', KEYS[1])
if t < exp then redis.call('EXPIREAT', KEYS[1], exp) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(redis.call('TIME')[1]))
return 1
";

/// Lua: counts a failed sign-in (KEYS[1]; ARGV: now, window).
const LOGIN_FAILURE: &str = r"
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
";

pub struct RedisStore {
    connections: Arc<Connections>,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    revocations: Arc<RevocationList>,
    metrics: Arc<Metrics>,
    use_code: Script,
    rotate_refresh: Script,
    revoke: Script,
    login_failure: Script,
}

/// What the mirror needs to run: a client for its subscription, and the store for full loads.
pub struct RevocationMirror {
    subscriber: redis::Client,
    store: Arc<RedisStore>,
    channel: String,
}

impl RedisStore {
    /// The store and the mirror task that keeps its revocation list current (the caller runs
    /// [`RevocationMirror::run`] for the life of the process).
    pub fn new(config: &RedisConfig, metrics: Arc<Metrics>) -> Result<(Arc<RedisStore>, RevocationMirror), String> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let (connections, subscriber) = match &config.servers {
            RedisServers::Single(url) => {
                let info = connection_info(url, config)?;
                let client = redis::Client::open(info).map_err(|e| e.to_string())?;
                let connections = Connections::Single {
                    client: client.clone(),
                    pool: OnceCell::new(),
                    next: AtomicUsize::new(0),
                    config: manager_config,
                    size: config.pool_size,
                };
                (connections, client)
            }
            RedisServers::Cluster(nodes) => {
                let infos = nodes
                    .iter()
                    .map(|n| connection_info(n, config))
                    .collect::<Result<Vec<_>, _>>()?;
                // a published message reaches every node of a cluster: one node is enough to listen
                let subscriber = redis::Client::open(infos[0].clone()).map_err(|e| e.to_string())?;
                let client = redis::cluster::ClusterClientBuilder::new(infos)
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| e.to_string())?;
                (
                    Connections::Cluster {
                        client,
                        conn: Mutex::new(None),
                    },
                    subscriber,
                )
            }
        };
        let revocations = Arc::new(RevocationList::new(10_000_000));
        // nothing is known until the first full load
        revocations.mark_stale(unix_now());
        let store = Arc::new(RedisStore {
            connections: Arc::new(connections),
            prefix: config.key_prefix.clone(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            revocations,
            metrics,
            use_code: Script::new(USE_CODE),
            rotate_refresh: Script::new(ROTATE_REFRESH),
            revoke: Script::new(REVOKE),
            login_failure: Script::new(LOGIN_FAILURE),
        });
        let mirror = RevocationMirror {
            subscriber,
            channel: format!("{}revocations", config.key_prefix),
            store: store.clone(),
        };
        Ok((store, mirror))
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn revocation_set(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    fn family_key(&self, family: &str) -> String {
        // the family and its tokens share the hash tag {family}: one Cluster slot
        format!("{}rt:{{{family}}}:family", self.prefix)
    }

    fn refresh_token_key(&self, key: &RefreshKey) -> String {
        format!("{}rt:{{{}}}:t:{}", self.prefix, key.family, key.token_hash)
    }

    /// Runs one Redis operation, bounded by the command timeout, and counts it.
    async fn exec<T, F, Fut>(&self, op: &'static str, run: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = async {
            let conn = self.connections.get(self.connect_timeout).await?;
            match tokio::time::timeout(self.command_timeout, run(conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreError::Backend(format!("Redis: {}", crate::redact::text(&e.to_string())))),
                Err(_) => Err(StoreError::Backend(format!("Redis did not answer within {:?}", self.command_timeout))),
            }
        }
        .await;
        self.metrics
            .store_latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.metrics.store_up.set(1),
            Err(e) => {
                self.metrics.store_errors.with_label_values(&[op]).inc();
                self.metrics.store_up.set(0);
                tracing::warn!(op, error = %e, "a store operation failed");
                self.connections.failed().await;
            }
        }
        result
    }

    async fn cmd<T: FromRedisValue + Send + 'static>(&self, op: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        self.exec(op, |mut c| async move { cmd.query_async(&mut c).await }).await
    }

    async fn script<T: FromRedisValue + Send + 'static>(&self, op: &'static str, script: &Script, keys: Vec<String>, args: Vec<String>) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        for a in &args {
            invocation.arg(a);
        }
        self.exec(op, |mut c| async move { invocation.invoke_async(&mut c).await }).await
    }

    async fn put_json<V: Serialize>(&self, op: &'static str, key: String, value: &V, expires_at: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(json).arg("EXAT").arg(expires_at.max(unix_now() + 1));
        self.cmd::<()>(op, cmd).await
    }

    async fn get_json<V: DeserializeOwned>(&self, op: &'static str, key: String) -> Result<Option<V>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let text: Option<String> = self.cmd(op, cmd).await?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Backend(format!("a stored {op} record is unreadable: {e}"))))
            .transpose()
    }

    async fn delete(&self, op: &'static str, key: String) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        self.cmd::<()>(op, cmd).await
    }

    /// Every live revocation in the store.
    async fn load_revocations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.revocation_set()).arg(unix_now()).arg("+inf").arg("BYSCORE").arg("WITHSCORES");
        let pairs: Vec<(String, f64)> = self.cmd("load_revocations", cmd).await?;
        Ok(pairs.into_iter().map(|(k, exp)| (k, exp as u64)).collect())
    }
}

/// `jti:…` / `grant:…` back to what it revokes.
fn parse_revoked(member: &str) -> Option<Revoked<'_>> {
    if let Some(jti) = member.strip_prefix("jti:") {
        Some(Revoked::Token(jti))
    } else {
        member.strip_prefix("grant:").map(Revoked::Grant)
    }
}

impl RevocationMirror {
    /// Keeps the revocation list current until the process ends: subscribe, load everything,
    /// apply each published revocation; on any failure, mark the list stale and start over with
    /// backoff.
    pub async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.follow().await {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) => {
                    tracing::warn!(error = %e, "the revocation mirror lost Redis; retrying");
                }
            }
            self.store.revocations.mark_stale(unix_now());
            self.store.metrics.store_up.set(0);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One subscription's life. Returns when it breaks.
    async fn follow(&self) -> Result<(), String> {
        let timeout = self.store.connect_timeout;
        let pubsub = tokio::time::timeout(timeout, self.subscriber.get_async_pubsub())
            .await
            .map_err(|_| "subscribing timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = pubsub.split();
        tokio::time::timeout(timeout, sink.subscribe(&self.channel))
            .await
            .map_err(|_| "subscribing timed out".to_string())?
            .map_err(|e| e.to_string())?;
        // subscribed first, then the full load: nothing published in between is missed
        let all = self.store.load_revocations().await.map_err(|e| e.to_string())?;
        let now = unix_now();
        self.store
            .revocations
            .replace_all(all.iter().filter_map(|(m, exp)| Some((parse_revoked(m)?, *exp))), now);
        self.store.revocations.mark_current();
        self.store.metrics.store_up.set(1);
        tracing::info!(revocations = all.len(), "revocation mirror in sync with Redis");
        let mut ping = tokio::time::interval(MIRROR_PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err("the subscription ended".into());
                    };
                    let payload: String = message.get_payload().map_err(|e| e.to_string())?;
                    if let Some((member, exp)) = payload.rsplit_once(' ') {
                        if let (Some(revoked), Ok(exp)) = (parse_revoked(member), exp.parse::<u64>()) {
                            let _ = self.store.revocations.insert(revoked, exp, unix_now());
                        }
                    }
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(timeout, sink.ping::<Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Err("the subscription stopped answering".into());
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        let json = serde_json::to_string(registration).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("reg", &registration.client_id))
            .arg(json)
            .arg("NX")
            .arg("EXAT")
            .arg(registration.expires_at);
        let set: Option<String> = self.cmd("put_registration", cmd).await?;
        match set {
            Some(_) => Ok(()),
            None => Err(StoreError::Backend("client_id collision".into())),
        }
    }

    async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        Ok(self
            .get_json::<Registration>("registration", self.key("reg", client_id))
            .await?
            .filter(|r| r.expires_at > unix_now()))
    }

    async fn remember_assertion(&self, id: &str, expires_at: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("jti", &blake3::hash(id.as_bytes()).to_hex()))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expires_at.max(unix_now() + 1));
        let set: Option<String> = self.cmd("remember_assertion", cmd).await?;
        Ok(set.is_some())
    }

    async fn revoke(&self, revoked: Revoked<'_>, expires_at: u64) -> Result<(), StoreError> {
        let member = revoked.key();
        self.script::<i64>("revoke", &self.revoke, vec![self.revocation_set()], vec![member.clone(), expires_at.to_string()])
            .await?;
        // this replica refuses the token at once; the others hear it on the channel
        let _ = self.revocations.insert(revoked, expires_at, unix_now());
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(format!("{}revocations", self.prefix)).arg(format!("{member} {expires_at}"));
        self.cmd::<i64>("publish_revocation", publish).await?;
        Ok(())
    }

    fn revocations(&self) -> Arc<RevocationList> {
        self.revocations.clone()
    }

    async fn put_pending(&self, id: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        self.put_json("put_pending", self.key("pending", id), pending, pending.expires_at).await
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        self.get_json("pending", self.key("pending", id)).await
    }

    async fn delete_pending(&self, id: &str) -> Result<(), StoreError> {
        self.delete("delete_pending", self.key("pending", id)).await
    }

    async fn put_session(&self, id: &str, session: &Session) -> Result<(), StoreError> {
        self.put_json("put_session", self.key("session", id), session, session.expires_at).await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.get_json("session", self.key("session", id)).await
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.delete("delete_session", self.key("session", id)).await
    }

    async fn put_consent(&self, key: &str, scope: &str, expires_at: u64) -> Result<(), StoreError> {
        let hashed = blake3::hash(key.as_bytes()).to_hex();
        self.put_json("put_consent", self.key("consent", &hashed), &scope, expires_at).await
    }

    async fn consent(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hashed = blake3::hash(key.as_bytes()).to_hex();
        self.get_json("consent", self.key("consent", &hashed)).await
    }

    async fn put_code(&self, code_hash: &str, grant: &CodeGrant) -> Result<(), StoreError> {
        let json = serde_json::to_string(grant).map_err(|e| StoreError::Backend(e.to_string()))?;
        let key = self.key("code", code_hash);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("grant")
            .arg(json)
            .arg("used")
            .arg(0)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&key)
            .arg(grant.expires_at.max(unix_now() + 1))
            .ignore();
        self.exec("put_code", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    async fn peek_code(&self, code_hash: &str) -> Result<Option<(CodeGrant, bool)>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key("code", code_hash)).arg("grant").arg("used");
        let (grant, used): (Option<String>, Option<u64>) = self.cmd("peek_code", cmd).await?;
        let Some(grant) = grant else { return Ok(None) };
        let grant: CodeGrant = serde_json::from_str(&grant).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Some((grant, used.unwrap_or(0) > 0)))
    }

    async fn use_code(&self, code_hash: &str) -> Result<CodeUse, StoreError> {
        let result: Option<(String, u64)> = self
            .script("use_code", &self.use_code, vec![self.key("code", code_hash)], vec![])
            .await?;
        let Some((grant, used)) = result else {
            return Ok(CodeUse::Unknown);
        };
        let grant: CodeGrant = serde_json::from_str(&grant).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(if used == 1 { CodeUse::Fresh(grant) } else { CodeUse::Reused(grant) })
    }

    async fn put_refresh_family(&self, family: &RefreshFamily, first: &RefreshKey) -> Result<(), StoreError> {
        let json = serde_json::to_string(family).map_err(|e| StoreError::Backend(e.to_string()))?;
        let family_key = self.family_key(&family.id);
        let expires = family.expires_at.max(unix_now() + 1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&family_key)
            .arg("json")
            .arg(json)
            .arg("current")
            .arg(family.current)
            .arg("revoked")
            .arg(u8::from(family.revoked))
            .arg("expires_at")
            .arg(family.expires_at)
            .arg("last_used")
            .arg(family.last_used)
            .arg("idle")
            .arg(family.idle_lifetime)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&family_key)
            .arg(expires)
            .ignore()
            .cmd("SET")
            .arg(self.refresh_token_key(first))
            .arg(family.current)
            .arg("EXAT")
            .arg(expires)
            .ignore();
        self.exec("put_refresh_family", |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    async fn rotate_refresh(&self, token: &RefreshKey, new: &RefreshKey, now: u64) -> Result<RefreshUse, StoreError> {
        if token.family != new.family {
            return Err(StoreError::Backend("a refresh token is replaced within its family only".into()));
        }
        let keys = vec![self.family_key(&token.family), self.refresh_token_key(token), self.refresh_token_key(new)];
        let result: Vec<Value> = self
            .script("rotate_refresh", &self.rotate_refresh, keys, vec![now.to_string()])
            .await?;
        let code: i64 = result.first().map(|v| i64::from_redis_value(v.clone())).transpose().map_err(|e| StoreError::Backend(e.to_string()))?.unwrap_or(0);
        if code == 0 {
            return Ok(RefreshUse::Unknown);
        }
        let json: String = String::from_redis_value(result[1].clone()).map_err(|e| StoreError::Backend(e.to_string()))?;
        let current: String = String::from_redis_value(result[2].clone()).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut family: RefreshFamily = serde_json::from_str(&json).map_err(|e| StoreError::Backend(e.to_string()))?;
        family.current = current.parse().unwrap_or(family.current);
        if code == 2 {
            family.revoked = true;
            return Ok(RefreshUse::Reused(family));
        }
        family.last_used = now;
        Ok(RefreshUse::Rotated(family))
    }

    async fn refresh_family(&self, token: &RefreshKey) -> Result<Option<(RefreshFamily, bool)>, StoreError> {
        let family_key = self.family_key(&token.family);
        let token_key = self.refresh_token_key(token);
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(&family_key)
            .arg("json")
            .arg("current")
            .arg("revoked")
            .arg("last_used")
            .cmd("GET")
            .arg(&token_key);
        let ((json, current, revoked, last_used), generation): ((Option<String>, Option<u32>, Option<String>, Option<u64>), Option<u32>) =
            self.exec("refresh_family", |mut c| async move { pipe.query_async(&mut c).await }).await?;
        let (Some(json), Some(current), Some(generation)) = (json, current, generation) else {
            return Ok(None);
        };
        let mut family: RefreshFamily = serde_json::from_str(&json).map_err(|e| StoreError::Backend(e.to_string()))?;
        family.current = current;
        family.revoked = revoked.as_deref() == Some("1");
        family.last_used = last_used.unwrap_or(family.last_used);
        Ok(Some((family, generation == current)))
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        let key = self.family_key(family_id);
        // only an existing family is marked (never a new key without an expiry)
        let script = Script::new("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end return 1");
        self.script::<i64>("revoke_refresh_family", &script, vec![key], vec![]).await?;
        Ok(())
    }

    async fn add_login_failure(&self, key: &str, now: u64, window: u64) -> Result<LoginFailures, StoreError> {
        let hashed = blake3::hash(key.as_bytes()).to_hex();
        let count: u32 = self
            .script("add_login_failure", &self.login_failure, vec![self.key("login", &hashed)], vec![now.to_string(), window.max(1).to_string()])
            .await?;
        Ok(LoginFailures { count, last_at: now })
    }

    async fn login_failures(&self, key: &str) -> Result<LoginFailures, StoreError> {
        let hashed = blake3::hash(key.as_bytes()).to_hex();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key("login", &hashed)).arg("count").arg("last_at");
        let (count, last_at): (Option<u32>, Option<u64>) = self.cmd("login_failures", cmd).await?;
        Ok(LoginFailures {
            count: count.unwrap_or(0),
            last_at: last_at.unwrap_or(0),
        })
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        let hashed = blake3::hash(key.as_bytes()).to_hex();
        self.delete("clear_login_failures", self.key("login", &hashed)).await
    }

    async fn add_to_counters(&self, updates: &[CounterUpdate]) -> Result<Vec<CounterTotals>, StoreError> {
        // a counter's windows share a hash tag (one Cluster slot); each counter is one pipeline,
        // all sent at once over the multiplexed connection
        let pipelines: Vec<Pipeline> = updates
            .iter()
            .map(|u| {
                let key = |window: u64| format!("{}c:{{{}}}:{window}", self.prefix, u.key);
                let mut pipe = redis::pipe();
                pipe.cmd("INCRBY").arg(key(u.window)).arg(u.add);
                pipe.cmd("PEXPIRE").arg(key(u.window)).arg(u.ttl.as_millis().max(1) as u64).ignore();
                if u.with_previous && u.window > 0 {
                    pipe.cmd("GET").arg(key(u.window - 1));
                }
                pipe
            })
            .collect();
        self.exec("add_to_counters", |conn| async move {
            let answers = futures_util::future::join_all(pipelines.iter().map(|pipe| {
                let mut conn = conn.clone();
                async move { pipe.query_async::<Vec<Option<u64>>>(&mut conn).await }
            }))
            .await;
            answers
                .into_iter()
                .map(|a| {
                    a.map(|values| CounterTotals {
                        current: values.first().copied().flatten().unwrap_or(0),
                        previous: values.get(1).copied().flatten().unwrap_or(0),
                    })
                })
                .collect::<redis::RedisResult<Vec<_>>>()
        })
        .await
    }
}
