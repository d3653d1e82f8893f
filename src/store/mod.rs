//! State the gateway keeps between requests, behind one interface: client registrations made
//! with software statements (pre-agreed partners' registrations carry their own binding and store
//! nothing, see [`crate::oauth::partner_id`]), used client-assertion `jti`s (replay protection),
//! revocations, and what the user-delegated flow keeps (pending authorization requests, sessions,
//! consents, codes, refresh-token families, failed sign-ins). Every entry expires; whatever must
//! happen once happens atomically.
//!
//! [`memory::MemoryStore`] is the default. Nothing outside this module knows which backend runs.

pub mod memory;
pub mod redis;
pub mod records;
pub mod revocations;

pub use records::{CodeGrant, CodeUse, LoginFailures, PendingAuthorization, RefreshFamily, RefreshKey, RefreshUse, Session};
pub use revocations::{RevocationList, Revoked};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a stored `client_id` is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientBinding {
    /// A client registered with a software statement: keys and scopes fixed at registration from
    /// the statement's signed claims and the configured policy.
    SoftwareStatement {
        software_id: Option<String>,
        trusted: bool,
        jwks: Option<Value>,
        jwks_uri: Option<String>,
    },
}

/// A temporary client registration (RFC 7591).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub binding: ClientBinding,
    /// The scope registered (what tokens for this client_id may carry at most).
    pub scope: String,
    /// The client metadata as registered (returned to the client, RFC 7591 §3.2.1).
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A bounded table is full of live entries; refusing is safer than forgetting one.
    #[error("the {0} table is full")]
    Full(&'static str),
    #[error("store backend error: {0}")]
    Backend(String),
}

/// An addition to a shared counter (rate limits and quotas across replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    /// What is counted (a rule and its bucket, a quota and its partner).
    pub key: String,
    /// The window or period counted, by index.
    pub window: u64,
    pub add: u64,
    /// Also read the total of `window - 1`.
    pub with_previous: bool,
    /// How long the counter is kept.
    pub ttl: std::time::Duration,
}

/// The totals of a shared counter after an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterTotals {
    pub current: u64,
    pub previous: u64,
}

/// A task a store needs running for the life of the process (the Redis revocation mirror).
pub type StoreTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Opens the configured store: the only place that names a backend.
pub fn open(config: &crate::config::Config, metrics: Arc<crate::metrics::Metrics>) -> Result<(Arc<dyn Store>, Option<StoreTask>), String> {
    match &config.store {
        crate::config::StoreConfig::Memory => Ok((
            Arc::new(memory::MemoryStore::new(
                config.registration.max_entries,
                config.token_endpoint.max_replay_entries,
            )),
            None,
        )),
        crate::config::StoreConfig::Redis(redis) => {
            let (store, mirror) = redis::RedisStore::new(redis, metrics)?;
            Ok((store, Some(Box::pin(mirror.run()))))
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- clients and assertions -------------------------------------------------------------

    /// Saves a registration until its `expires_at`; [`StoreError::Full`] rather than dropping
    /// another live registration.
    async fn put_registration(&self, registration: &Registration) -> Result<(), StoreError>;

    /// A live registration, if any.
    async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError>;

    /// Records a client assertion's identifier until `expires_at` (Unix seconds). Returns `false`
    /// when the identifier is already recorded: the assertion is a replay.
    async fn remember_assertion(&self, id: &str, expires_at: u64) -> Result<bool, StoreError>;

    // --- revocations ------------------------------------------------------------------------

    /// Revokes an access token (by `jti`) or a grant (by grant id) until `expires_at`, when what
    /// it revokes would have expired anyway. Reaches [`Store::revocations`] of every process
    /// sharing the store.
    async fn revoke(&self, revoked: Revoked<'_>, expires_at: u64) -> Result<(), StoreError>;

    /// The revocations this process knows of, checked in memory by the proxy.
    fn revocations(&self) -> Arc<RevocationList>;

    // --- the user-delegated flow ------------------------------------------------------------

    async fn put_pending(&self, id: &str, pending: &PendingAuthorization) -> Result<(), StoreError>;
    async fn pending(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError>;
    async fn delete_pending(&self, id: &str) -> Result<(), StoreError>;

    /// Sessions by the hash of their cookie value.
    async fn put_session(&self, id: &str, session: &Session) -> Result<(), StoreError>;
    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;

    /// The scope a person consented to for a client (`key`: person and client), until `expires_at`.
    async fn put_consent(&self, key: &str, scope: &str, expires_at: u64) -> Result<(), StoreError>;
    async fn consent(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Codes by their hash, until the grant's `expires_at`.
    async fn put_code(&self, code_hash: &str, grant: &CodeGrant) -> Result<(), StoreError>;
    /// The grant of a code and whether it was used, without using it.
    async fn peek_code(&self, code_hash: &str) -> Result<Option<(CodeGrant, bool)>, StoreError>;
    /// Marks a code used, atomically: only one caller ever gets [`CodeUse::Fresh`].
    async fn use_code(&self, code_hash: &str) -> Result<CodeUse, StoreError>;

    /// Starts a refresh-token family with its first token.
    async fn put_refresh_family(&self, family: &RefreshFamily, first: &RefreshKey) -> Result<(), StoreError>;
    /// Replaces the refresh token `token` with `new` (of the same family), atomically: a token
    /// that was already replaced revokes its family instead.
    async fn rotate_refresh(&self, token: &RefreshKey, new: &RefreshKey, now: u64) -> Result<RefreshUse, StoreError>;
    /// The family of a refresh token and whether the token is its newest (introspection,
    /// revocation).
    async fn refresh_family(&self, token: &RefreshKey) -> Result<Option<(RefreshFamily, bool)>, StoreError>;
    /// Ends a family (its grant's access tokens are revoked separately).
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError>;

    /// Counts a failed sign-in for `key` (a username or an address) within `window` seconds.
    async fn add_login_failure(&self, key: &str, now: u64, window: u64) -> Result<LoginFailures, StoreError>;
    async fn login_failures(&self, key: &str) -> Result<LoginFailures, StoreError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;

    // --- shared counters --------------------------------------------------------------------

    /// Adds to counters (one per key and window) and returns each one's totals, in order.
    async fn add_to_counters(&self, updates: &[CounterUpdate]) -> Result<Vec<CounterTotals>, StoreError>;
}
