//! `GET /jwks` (RFC 7517): the public half of every signing key, so resource servers and clients
//! can verify the gateway's tokens: the `next` and `active` keys, and `retired` keys until their
//! last token has expired.

use crate::keys::KeyRing;
use crate::reply::Reply;

/// How long clients may cache the key set. Short enough that a rotation (new key added first)
/// reaches them well before the old key stops signing.
pub const MAX_AGE_SECS: u64 = 300;

pub fn reply(keys: &KeyRing) -> Reply {
    Reply::json(200, &keys.jwks(std::time::SystemTime::now())).with_header("Cache-Control", format!("public, max-age={MAX_AGE_SECS}"))
}
