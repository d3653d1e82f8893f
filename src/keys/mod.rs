//! Keys: the gateway's own signing keys (which sign and verify access tokens, published at
//! `/jwks`), partners' public keys (JWKs), key generation, and fetching remote key sets.

pub mod generate;
pub mod jwk;
pub mod remote;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::Value;
use std::time::{Duration, SystemTime};

pub use jwk::{PublicJwk, PublicJwkSet};

/// Algorithms the gateway can sign access tokens with.
pub const SIGNING_ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
];

pub fn parse_signing_alg(name: &str) -> Option<Algorithm> {
    SIGNING_ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 PEM private key for {alg}: {reason}")]
    BadPem { alg: &'static str, reason: String },
    #[error("cannot derive the public key: {0}")]
    PublicKey(String),
    #[error(transparent)]
    Jwk(#[from] jwk::JwkError),
    #[error("unsupported algorithm `{0}`; expected RS256, ES256 or EdDSA")]
    UnsupportedAlg(String),
    #[error("key generation failed")]
    Generation,
}

/// One of the gateway's signing keys.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub public: PublicJwk,
    /// Derived from the private key: the MAC key of the partner `client_id`s this key issues
    /// (every replica loading the same key derives the same one).
    pub id_mac_key: [u8; 32],
    pub lifecycle: KeyLifecycle,
}

/// Where a signing key is in its rotation (`signing_keys[].status`). Every status verifies: a
/// `next` key may already sign at a replica that reloaded first, and a `retired` key's tokens
/// live on until they expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published at `/jwks` ahead of signing, so that clients caching the key set know it
    /// before the first token it signs.
    Next,
    /// The one key that signs.
    Active,
    /// No longer signs; published until the longest token it signed has expired.
    Retired,
}

impl KeyStatus {
    pub const NAMES: &'static [(&'static str, KeyStatus)] =
        &[("next", KeyStatus::Next), ("active", KeyStatus::Active), ("retired", KeyStatus::Retired)];

    pub fn parse(name: &str) -> Option<KeyStatus> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The status of a key whose `status` is omitted: `active` for the first key of a ring where
    /// no key says which signs (the rings written before statuses existed), otherwise `next`.
    pub fn omitted(is_first: bool, another_is_active: bool) -> KeyStatus {
        if is_first && !another_is_active {
            KeyStatus::Active
        } else {
            KeyStatus::Next
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, s)| *s == self).map(|(n, _)| *n).expect("every status is named")
    }
}

/// A key's status and the times that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLifecycle {
    pub status: KeyStatus,
    /// When a retired key stopped signing (`signing_keys[].retired_at`).
    pub retired_at: Option<SystemTime>,
    /// When the key was made (its file's modification time), for the key-age metric.
    pub created_at: Option<SystemTime>,
}

impl KeyLifecycle {
    pub const ACTIVE: KeyLifecycle = KeyLifecycle {
        status: KeyStatus::Active,
        retired_at: None,
        created_at: None,
    };
    pub const NEXT: KeyLifecycle = KeyLifecycle {
        status: KeyStatus::Next,
        ..Self::ACTIVE
    };
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print key material
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PKCS#8 PEM private key that is to sign with `alg`.
    pub fn from_pem(kid: &str, alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        let alg_name = jwk::algorithm_name(alg);
        let bad = |e: jsonwebtoken::errors::Error| KeyError::BadPem {
            alg: alg_name,
            reason: e.to_string(),
        };
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).map_err(bad)?,
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).map_err(bad)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).map_err(bad)?,
            other => return Err(KeyError::UnsupportedAlg(jwk::algorithm_name(other).into())),
        };
        let derived = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg)
            .map_err(|e| KeyError::PublicKey(e.to_string()))?;
        let mut json = serde_json::to_value(&derived).map_err(|e| KeyError::PublicKey(e.to_string()))?;
        json["kid"] = Value::String(kid.to_string());
        let public = PublicJwk::from_json(&json)?;
        // A P-384 or other key loaded as ES256 would parse but could not sign ES256: check the fit.
        if !public.accepts(alg) {
            return Err(KeyError::BadPem {
                alg: alg_name,
                reason: format!("the key is a {} key, which cannot sign {alg_name}", public.kty()),
            });
        }
        let decoding = public.decoding_key();
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            encoding,
            decoding,
            public,
            id_mac_key: blake3::derive_key("oada-gateway 2026-11 partner client_id MAC", pem),
            lifecycle: KeyLifecycle::ACTIVE,
        })
    }

    pub fn with_lifecycle(mut self, lifecycle: KeyLifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }
}

/// The gateway's key ring: the `active` key signs, every key verifies, `/jwks` publishes the
/// `next` and `active` keys and each `retired` key until its last token has expired (so keys
/// rotate without a refused token: publish next, then sign with it, then retire the old one).
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    signer: usize,
    /// How long a retired key stays published: the longest lifetime of a token it signed,
    /// plus the clock skew verifiers allow.
    publish_retired_for: Duration,
}

impl KeyRing {
    /// `keys` must hold exactly one `active` key; the config loader guarantees it.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        let mut active = keys.iter().enumerate().filter(|(_, k)| k.lifecycle.status == KeyStatus::Active);
        let signer = active.next().map(|(i, _)| i).expect("a key ring needs an active key");
        assert!(active.next().is_none(), "a key ring has one active key");
        KeyRing {
            keys,
            signer,
            publish_retired_for: Duration::MAX,
        }
    }

    /// Stops publishing a retired key `after` it stopped signing.
    pub fn publishing_retired_for(mut self, after: Duration) -> Self {
        self.publish_retired_for = after;
        self
    }

    pub fn signer(&self) -> &SigningKey {
        &self.keys[self.signer]
    }

    /// Until when `/jwks` lists `key`: `None` for as long as it is in the ring (next and active
    /// keys), a retired key until `publish_retired_for` after it stopped signing.
    pub fn published_until(&self, key: &SigningKey) -> Option<SystemTime> {
        match (key.lifecycle.status, key.lifecycle.retired_at) {
            (KeyStatus::Retired, Some(at)) => at.checked_add(self.publish_retired_for),
            // the loader refuses a retired key without its time; publishing is the safe side
            (KeyStatus::Retired, None) | (KeyStatus::Next | KeyStatus::Active, _) => None,
        }
    }

    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public key set served at `/jwks` (RFC 7517) at `now`.
    pub fn jwks(&self, now: SystemTime) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .filter(|k| self.published_until(k).is_none_or(|until| now < until))
            .map(|k| k.public.to_json())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_publish_their_public_half() {
        for (name, alg) in SIGNING_ALGORITHMS {
            let pem = generate::private_key_pem(*alg).unwrap();
            let key = SigningKey::from_pem("k1", *alg, pem.as_bytes()).unwrap();
            let jwk = key.public.to_json();
            assert_eq!(jwk["kid"], "k1", "{name}");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], *name);
            assert!(jwk.get("d").is_none(), "no private material in the JWK");
        }
    }

    fn key(kid: &str, lifecycle: KeyLifecycle) -> SigningKey {
        let pem = generate::private_key_pem(Algorithm::ES256).unwrap();
        SigningKey::from_pem(kid, Algorithm::ES256, pem.as_bytes()).unwrap().with_lifecycle(lifecycle)
    }

    fn published(ring: &KeyRing, now: SystemTime) -> Vec<String> {
        ring.jwks(now)["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn the_active_key_signs_next_is_published_and_retired_until_its_tokens_expire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let retired = KeyLifecycle {
            status: KeyStatus::Retired,
            retired_at: Some(t0),
            created_at: None,
        };
        let ring = KeyRing::new(vec![key("old", retired), key("next", KeyLifecycle::NEXT), key("cur", KeyLifecycle::ACTIVE)])
            .publishing_retired_for(Duration::from_secs(3630));
        assert_eq!(ring.signer().kid, "cur");
        assert_eq!(published(&ring, t0), ["old", "next", "cur"]);
        assert_eq!(published(&ring, t0 + Duration::from_secs(3629)), ["old", "next", "cur"]);
        assert_eq!(published(&ring, t0 + Duration::from_secs(3630)), ["next", "cur"]);
        // every key still verifies
        assert!(ring.find("old").is_some() && ring.find("next").is_some());
    }

    #[test]
    fn status_names_round_trip() {
        for (name, status) in KeyStatus::NAMES {
            assert_eq!(KeyStatus::parse(name), Some(*status));
            assert_eq!(status.name(), *name);
        }
        assert_eq!(KeyStatus::parse("Active"), None);
    }

    #[test]
    fn wrong_algorithm_for_key_is_refused() {
        let pem = generate::private_key_pem(Algorithm::ES256).unwrap();
        assert!(SigningKey::from_pem("k", Algorithm::RS256, pem.as_bytes()).is_err());
        assert!(SigningKey::from_pem("k", Algorithm::ES256, b"not a pem").is_err());
    }
}
