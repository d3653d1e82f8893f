//! What the user-delegated flow keeps between requests. Every record is serializable, so any
//! backend can hold it, and every record has an expiry.

use serde::{Deserialize, Serialize};

/// An authorization request that passed validation at `/authorization` and waits for the person
/// to sign in and decide. Bound to one browser session; its forms carry `csrf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    /// The request named its redirect URI (the code exchange must then repeat it).
    pub redirect_uri_given: bool,
    pub scope: String,
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// Hash of the browser session's cookie value.
    pub session: String,
    pub csrf: String,
    pub expires_at: u64,
}

/// A browser session: anonymous until the person signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Option<String>,
    /// When the person signed in (`auth_time` of their tokens).
    pub auth_time: Option<u64>,
    pub expires_at: u64,
}

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub user_id: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub auth_time: u64,
    pub expires_at: u64,
    /// Every token issued from this code carries it; revoking it revokes them all.
    pub grant_id: String,
}

/// Using a code: only the first use gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    Fresh(CodeGrant),
    /// Used before: the caller revokes what the first use issued (RFC 6749 §4.1.2).
    Reused(CodeGrant),
    Unknown,
}

/// A refresh-token family: the refresh tokens issued for one grant, each replacing the one
/// before. Only the newest (generation `current`) may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshFamily {
    /// The grant id tokens of this family carry.
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: u64,
    /// Absolute end of the family.
    pub expires_at: u64,
    /// The family ends this long after its newest token was issued.
    pub idle_lifetime: u64,
    pub last_used: u64,
    pub current: u32,
    pub revoked: bool,
}

impl RefreshFamily {
    /// Usable at `now`: not revoked, not past its absolute or idle end.
    pub fn is_live(&self, now: u64) -> bool {
        !self.revoked && now < self.expires_at && now < self.last_used.saturating_add(self.idle_lifetime)
    }
}

/// Using a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// The newest token of a live family: it is replaced by the new one.
    Rotated(RefreshFamily),
    /// A token that was already replaced: the family is now revoked (RFC 9700 §4.14.2).
    Reused(RefreshFamily),
    /// Unknown, expired or revoked.
    Unknown,
}

/// Failed sign-ins for one username or address within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    pub count: u32,
    pub last_at: u64,
}

/// Where a refresh token is found: its family (carried in the token, so that a family and its
/// tokens can live together, e.g. in one Redis Cluster slot) and the token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshKey {
    pub family: String,
    pub token_hash: String,
}

/// Refresh tokens read `rt1.<family id>.<256 random bits>`.
const REFRESH_PREFIX: &str = "rt1.";

impl RefreshKey {
    /// A new refresh token of `family` and its key.
    pub fn new_token(family: &str) -> (String, RefreshKey) {
        let token = format!("{REFRESH_PREFIX}{family}.{}", crate::ids::random_id(32));
        let key = RefreshKey::of(&token).expect("a token just made reads back");
        (token, key)
    }

    /// The key of a presented refresh token; `None` when it cannot be one.
    pub fn of(token: &str) -> Option<RefreshKey> {
        let rest = token.strip_prefix(REFRESH_PREFIX)?;
        let (family, secret) = rest.split_once('.')?;
        let ok = |s: &str, len: std::ops::RangeInclusive<usize>| {
            len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !ok(family, 16..=64) || !ok(secret, 43..=43) {
            return None;
        }
        Some(RefreshKey {
            family: family.to_string(),
            token_hash: blake3::hash(token.as_bytes()).to_hex().to_string(),
        })
    }
}
