//! Keys: the gateway's own signing keys (which sign and verify access tokens, published at
//! `/jwks`), partners' public keys (JWKs), key generation, and fetching remote key sets.

pub mod generate;
pub mod jwk;
pub mod remote;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::Value;

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
        })
    }
}

/// The gateway's key ring: the first key signs, every key verifies (so keys can be rotated by
/// adding the new key first and removing the old one once its tokens have expired).
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// `keys` must not be empty; the config loader guarantees it.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        assert!(!keys.is_empty(), "a key ring needs at least one key");
        KeyRing { keys }
    }

    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public key set served at `/jwks` (RFC 7517).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys.iter().map(|k| k.public.to_json()).collect();
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

    #[test]
    fn wrong_algorithm_for_key_is_refused() {
        let pem = generate::private_key_pem(Algorithm::ES256).unwrap();
        assert!(SigningKey::from_pem("k", Algorithm::RS256, pem.as_bytes()).is_err());
        assert!(SigningKey::from_pem("k", Algorithm::ES256, b"not a pem").is_err());
    }
}
