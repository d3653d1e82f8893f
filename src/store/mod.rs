//! State the gateway keeps between requests, behind one narrow interface: client registrations
//! made with software statements (pre-agreed partners' registrations carry their own binding and
//! store nothing, see [`crate::oauth::partner_id`]), used client-assertion `jti`s (replay
//! protection) and revoked access tokens.
//!
//! [`memory::MemoryStore`] is the default. Nothing outside this module knows which backend runs.

pub mod memory;

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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a registration until its `expires_at`; [`StoreError::Full`] rather than dropping
    /// another live registration.
    async fn put_registration(&self, registration: &Registration) -> Result<(), StoreError>;

    /// A live registration, if any.
    async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError>;

    /// Records a client assertion's identifier until `expires_at` (Unix seconds). Returns `false`
    /// when the identifier is already recorded: the assertion is a replay.
    async fn remember_assertion(&self, id: &str, expires_at: u64) -> Result<bool, StoreError>;

    /// Marks an access token (by `jti`) revoked until it would have expired anyway.
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError>;

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError>;
}
