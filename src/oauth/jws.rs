//! Compact JWS as partners send them (client assertions, software statements): parsed here, and
//! verified only with a key the caller chose from a trusted source. Header members such as `jwk`
//! or `jku` are data to look up, never keys to verify with.

use crate::keys::jwk::{parse_algorithm, ASSERTION_ALGORITHMS};
use crate::keys::PublicJwk;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Largest JWS accepted (assertions and statements are a few KiB at most).
pub const MAX_JWS_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts with JSON header and payload)")]
    Malformed,
    #[error("the JWS is larger than {MAX_JWS_LEN} bytes")]
    TooLarge,
    #[error("algorithm `{0}` is not accepted; use RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA")]
    Algorithm(String),
    #[error("the JWS has critical header parameters (`crit`) this server does not understand")]
    Critical,
    #[error("the signature does not verify with the key")]
    BadSignature,
    #[error("the key does not allow algorithm {0}")]
    KeyMismatch(&'static str),
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Jws<'a> {
    pub header: Map<String, Value>,
    pub alg: Algorithm,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwsError::Malformed)?;
    // duplicate member names are refused (RFC 7515 §4, RFC 7519 §4)
    match crate::json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwsError::Malformed),
    }
}

/// HMAC algorithms, accepted only where a client's own shared secret verifies them
/// (`client_secret_jwt`), never with a public key.
pub const HMAC_ALGORITHMS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

impl<'a> Jws<'a> {
    /// Parses a JWS signed with one of the public-key [`ASSERTION_ALGORITHMS`].
    pub fn parse(token: &'a str) -> Result<Jws<'a>, JwsError> {
        Self::parse_with(token, ASSERTION_ALGORITHMS)
    }

    /// Parses a JWS signed with one of `allowed`.
    pub fn parse_with(token: &'a str, allowed: &[Algorithm]) -> Result<Jws<'a>, JwsError> {
        if token.len() > MAX_JWS_LEN {
            return Err(JwsError::TooLarge);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(JwsError::Malformed)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(JwsError::Malformed)?;
        if payload_b64.contains('.') || signature.is_empty() {
            return Err(JwsError::Malformed);
        }
        let header = decode_object(header_b64)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwsError::Malformed)?;
        let alg = parse_algorithm(alg_name)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| JwsError::Algorithm(alg_name.to_string()))?;
        if header.contains_key("crit") {
            return Err(JwsError::Critical);
        }
        let claims = decode_object(payload_b64)?;
        Ok(Jws {
            header,
            alg,
            claims,
            signing_input,
            signature,
        })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The `kid` of the header, or of the header's embedded `jwk` (as @oada/certs writes it).
    pub fn kid(&self) -> Option<&str> {
        self.header_str("kid").or_else(|| {
            self.header
                .get("jwk")
                .and_then(|j| j.get("kid"))
                .and_then(Value::as_str)
        })
    }

    pub fn is_hmac(&self) -> bool {
        HMAC_ALGORITHMS.contains(&self.alg)
    }

    /// Verifies an HMAC signature with a shared `secret`.
    pub fn verify_hmac(&self, secret: &[u8]) -> Result<(), JwsError> {
        if !self.is_hmac() {
            return Err(JwsError::KeyMismatch(crate::keys::jwk::algorithm_name(self.alg)));
        }
        let key = jsonwebtoken::DecodingKey::from_secret(secret);
        match jsonwebtoken::crypto::verify(self.signature, self.signing_input.as_bytes(), &key, self.alg) {
            Ok(true) => Ok(()),
            _ => Err(JwsError::BadSignature),
        }
    }

    /// Verifies the signature with `key`, which must allow the header's algorithm.
    pub fn verify(&self, key: &PublicJwk) -> Result<(), JwsError> {
        if !key.accepts(self.alg) {
            return Err(JwsError::KeyMismatch(crate::keys::jwk::algorithm_name(self.alg)));
        }
        match jsonwebtoken::crypto::verify(self.signature, self.signing_input.as_bytes(), &key.decoding_key(), self.alg) {
            Ok(true) => Ok(()),
            _ => Err(JwsError::BadSignature),
        }
    }
}

/// Numeric-date claim (RFC 7519 §2): integer or fractional seconds.
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be a NumericDate")),
    }
}

/// Does the `aud` claim (string or array) contain any of `accepted`?
pub fn audience_contains(claims: &Map<String, Value>, accepted: &[&str]) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => accepted.contains(&a.as_str()),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| accepted.contains(&a)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn refuses_none_hmac_and_crit() {
        let body = b64(&serde_json::json!({"iss": "x"}));
        for (header, expected) in [
            (serde_json::json!({"alg": "none"}), JwsError::Algorithm("none".into())),
            (serde_json::json!({"alg": "HS256"}), JwsError::Algorithm("HS256".into())),
            (serde_json::json!({"alg": "RS256", "crit": ["exp"]}), JwsError::Critical),
            (serde_json::json!({"typ": "JWT"}), JwsError::Malformed),
        ] {
            let token = format!("{}.{body}.c2ln", b64(&header));
            assert_eq!(Jws::parse(&token).unwrap_err(), expected);
        }
        assert_eq!(Jws::parse("a.b").unwrap_err(), JwsError::Malformed);
        assert_eq!(Jws::parse("a.b.c.d").unwrap_err(), JwsError::Malformed);
    }

    #[test]
    fn audience_string_or_array() {
        let one: Map<String, Value> = serde_json::from_value(serde_json::json!({"aud": "https://x/token"})).unwrap();
        let many: Map<String, Value> = serde_json::from_value(serde_json::json!({"aud": ["a", "https://x"]})).unwrap();
        assert!(audience_contains(&one, &["https://x/token", "https://x"]));
        assert!(audience_contains(&many, &["https://x/token", "https://x"]));
        assert!(!audience_contains(&one, &["https://y"]));
    }

    #[test]
    fn numeric_dates() {
        let c: Map<String, Value> = serde_json::from_value(serde_json::json!({"a": 10, "b": 10.7, "c": "10", "d": -1})).unwrap();
        assert_eq!(numeric_date(&c, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(10)));
        assert!(numeric_date(&c, "c").is_err());
        assert!(numeric_date(&c, "d").is_err());
        assert_eq!(numeric_date(&c, "missing"), Ok(None));
    }
}
