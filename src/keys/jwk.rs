//! Public JSON Web Keys (RFC 7517): parsing, RFC 7638 thumbprints, and which algorithms a key may
//! verify.
//!
//! Keys are parsed into typed parameters (decoded bytes), so a thumbprint is computed from the key
//! itself rather than from however its JSON happened to be written, and a key can only verify the
//! algorithms its type allows: a header's `alg` never chooses how a key is used.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Map, Value};

/// Algorithms accepted on signatures made by partners (client assertions, software statements).
/// `none` and every HMAC algorithm are absent on purpose.
pub const ASSERTION_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
}

impl EcCurve {
    fn name(&self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
        }
    }

    fn coordinate_len(&self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
        }
    }
}

/// The key material of a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyParams {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { crv: EcCurve, x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("a JWK must be a JSON object")]
    NotAnObject,
    #[error("JWK member `{0}` is missing or not a string")]
    Missing(&'static str),
    #[error("JWK member `{0}` is not base64url")]
    BadBase64(&'static str),
    #[error("unsupported key type `{0}`; expected RSA, EC (P-256, P-384) or OKP (Ed25519)")]
    UnsupportedKeyType(String),
    #[error("unsupported curve `{0}`")]
    UnsupportedCurve(String),
    #[error("the JWK holds private or symmetric key material (`{0}`); only public keys belong in a registration")]
    PrivateMaterial(&'static str),
    #[error("RSA key of {0} bits is too small; at least {MIN_RSA_BITS} bits are required")]
    WeakRsa(usize),
    #[error("EC coordinate `{0}` has the wrong length for its curve")]
    BadCoordinate(&'static str),
    #[error("key `use` is `{0}`; signing keys must have use `sig` or none")]
    NotForSigning(String),
    #[error("key `alg` `{0}` is not an accepted signing algorithm (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)")]
    UnsupportedAlg(String),
    #[error("key `alg` `{alg}` does not fit a key of type {kty}")]
    AlgMismatch { alg: String, kty: &'static str },
    #[error("a JWK set must be an object with a `keys` array")]
    NotASet,
    #[error("a JWK set holds no usable key")]
    EmptySet,
    #[error("key {index} of the set: {error}")]
    InSet { index: usize, error: Box<JwkError> },
}

/// A parsed public JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: Option<String>,
    /// The algorithm the key is restricted to, if its JWK names one.
    pub alg: Option<Algorithm>,
    pub params: KeyParams,
}

fn b64(value: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = value
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::Missing(name))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| JwkError::BadBase64(name))
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>().ok()
}

pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

impl PublicJwk {
    pub fn from_json(value: &Value) -> Result<Self, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if obj.contains_key(private) {
                let name: &'static str = match private {
                    "d" => "d",
                    "p" => "p",
                    "q" => "q",
                    "dp" => "dp",
                    "dq" => "dq",
                    "qi" => "qi",
                    "oth" => "oth",
                    _ => "k",
                };
                return Err(JwkError::PrivateMaterial(name));
            }
        }
        if let Some(usage) = obj.get("use") {
            let usage = usage.as_str().unwrap_or("");
            if usage != "sig" {
                return Err(JwkError::NotForSigning(usage.to_string()));
            }
        }
        let kty = obj
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(JwkError::Missing("kty"))?;
        let params = match kty {
            "RSA" => {
                let n = strip_leading_zeros(&b64(obj, "n")?);
                let e = strip_leading_zeros(&b64(obj, "e")?);
                if n.len() * 8 < MIN_RSA_BITS {
                    return Err(JwkError::WeakRsa(n.len() * 8));
                }
                if e.is_empty() {
                    return Err(JwkError::BadBase64("e"));
                }
                KeyParams::Rsa { n, e }
            }
            "EC" => {
                let crv = match obj.get("crv").and_then(Value::as_str) {
                    Some("P-256") => EcCurve::P256,
                    Some("P-384") => EcCurve::P384,
                    Some(other) => return Err(JwkError::UnsupportedCurve(other.to_string())),
                    None => return Err(JwkError::Missing("crv")),
                };
                let x = b64(obj, "x")?;
                let y = b64(obj, "y")?;
                if x.len() != crv.coordinate_len() {
                    return Err(JwkError::BadCoordinate("x"));
                }
                if y.len() != crv.coordinate_len() {
                    return Err(JwkError::BadCoordinate("y"));
                }
                KeyParams::Ec { crv, x, y }
            }
            "OKP" => {
                match obj.get("crv").and_then(Value::as_str) {
                    Some("Ed25519") => {}
                    Some(other) => return Err(JwkError::UnsupportedCurve(other.to_string())),
                    None => return Err(JwkError::Missing("crv")),
                }
                let x = b64(obj, "x")?;
                if x.len() != 32 {
                    return Err(JwkError::BadCoordinate("x"));
                }
                KeyParams::Ed25519 { x }
            }
            other => return Err(JwkError::UnsupportedKeyType(other.to_string())),
        };
        let alg = match obj.get("alg") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let name = v.as_str().unwrap_or("");
                let alg = parse_algorithm(name)
                    .filter(|a| ASSERTION_ALGORITHMS.contains(a))
                    .ok_or_else(|| JwkError::UnsupportedAlg(name.to_string()))?;
                Some(alg)
            }
        };
        let jwk = PublicJwk {
            kid: obj.get("kid").and_then(Value::as_str).map(str::to_string),
            alg,
            params,
        };
        if let Some(alg) = alg {
            if !jwk.kind_supports(alg) {
                return Err(JwkError::AlgMismatch {
                    alg: algorithm_name(alg).to_string(),
                    kty: jwk.kty(),
                });
            }
        }
        Ok(jwk)
    }

    pub fn kty(&self) -> &'static str {
        match self.params {
            KeyParams::Rsa { .. } => "RSA",
            KeyParams::Ec { .. } => "EC",
            KeyParams::Ed25519 { .. } => "OKP",
        }
    }

    /// May this key type verify `alg` at all (ignoring the JWK's own `alg` restriction)?
    fn kind_supports(&self, alg: Algorithm) -> bool {
        match (&self.params, alg) {
            (
                KeyParams::Rsa { .. },
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256,
            ) => true,
            (KeyParams::Ec { crv: EcCurve::P256, .. }, Algorithm::ES256) => true,
            (KeyParams::Ec { crv: EcCurve::P384, .. }, Algorithm::ES384) => true,
            (KeyParams::Ed25519 { .. }, Algorithm::EdDSA) => true,
            _ => false,
        }
    }

    /// May this key verify a signature made with `alg`? The algorithm must be on the allow-list,
    /// fit the key type, and match the key's own `alg` when it names one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        ASSERTION_ALGORITHMS.contains(&alg)
            && self.kind_supports(alg)
            && self.alg.is_none_or(|own| own == alg)
    }

    pub fn decoding_key(&self) -> DecodingKey {
        match &self.params {
            KeyParams::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            KeyParams::Ec { x, y, .. } => {
                // from_ec_components wants base64url text; it cannot fail on coordinates we decoded.
                DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
                    .expect("EC coordinates were validated when the JWK was parsed")
            }
            KeyParams::Ed25519 { x } => DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x))
                .expect("Ed25519 key was validated when the JWK was parsed"),
        }
    }

    /// The RFC 7638 members in lexicographic order, serialized without whitespace.
    fn thumbprint_input(&self) -> String {
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.params {
            KeyParams::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, enc(e), enc(n))
            }
            KeyParams::Ec { crv, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                crv.name(),
                enc(x),
                enc(y)
            ),
            KeyParams::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, enc(x)),
        }
    }

    /// RFC 7638 JWK SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> String {
        let d = digest::digest(&digest::SHA256, self.thumbprint_input().as_bytes());
        URL_SAFE_NO_PAD.encode(d.as_ref())
    }

    /// The public JWK as JSON, with `use: sig` and the given `kid`/`alg` when known.
    pub fn to_json(&self) -> Value {
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut obj = match &self.params {
            KeyParams::Rsa { n, e } => json!({"kty": "RSA", "n": enc(n), "e": enc(e)}),
            KeyParams::Ec { crv, x, y } => {
                json!({"kty": "EC", "crv": crv.name(), "x": enc(x), "y": enc(y)})
            }
            KeyParams::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": enc(x)}),
        };
        let map = obj.as_object_mut().expect("built as an object");
        map.insert("use".into(), json!("sig"));
        if let Some(kid) = &self.kid {
            map.insert("kid".into(), json!(kid));
        }
        if let Some(alg) = self.alg {
            map.insert("alg".into(), json!(algorithm_name(alg)));
        }
        obj
    }
}

/// A set of public keys a client may sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwkSet {
    keys: Vec<PublicJwk>,
}

impl PublicJwkSet {
    pub fn new(keys: Vec<PublicJwk>) -> Result<Self, JwkError> {
        if keys.is_empty() {
            return Err(JwkError::EmptySet);
        }
        Ok(Self { keys })
    }

    /// Parses `{"keys": [...]}`. Every key must parse: a set with a key we cannot read is refused
    /// rather than half-used.
    pub fn from_json(value: &Value) -> Result<Self, JwkError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwkError::NotASet)?;
        let parsed = keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                PublicJwk::from_json(k).map_err(|error| JwkError::InSet {
                    index,
                    error: Box::new(error),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parsed)
    }

    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }

    /// The key a signature names by `kid`, or the only key when the signature names none.
    pub fn select(&self, kid: Option<&str>) -> Option<&PublicJwk> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn thumbprints(&self) -> Vec<String> {
        self.keys.iter().map(PublicJwk::thumbprint).collect()
    }

    pub fn to_json(&self) -> Value {
        json!({ "keys": self.keys.iter().map(PublicJwk::to_json).collect::<Vec<_>>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7638 §3.1 example key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn rfc_key() -> Value {
        json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})
    }

    #[test]
    fn rfc7638_thumbprint() {
        let jwk = PublicJwk::from_json(&rfc_key()).unwrap();
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn thumbprint_ignores_representation() {
        // padding and member order do not change a key's identity
        let mut v = rfc_key();
        v["e"] = json!("AQAB==");
        v["kid"] = json!("another-name");
        assert_eq!(
            PublicJwk::from_json(&v).unwrap().thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn refuses_private_and_symmetric_material() {
        let mut v = rfc_key();
        v["d"] = json!("AAAA");
        assert_eq!(PublicJwk::from_json(&v), Err(JwkError::PrivateMaterial("d")));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(PublicJwk::from_json(&oct), Err(JwkError::PrivateMaterial("k")));
    }

    #[test]
    fn refuses_weak_rsa_and_bad_use() {
        let weak = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
        assert_eq!(PublicJwk::from_json(&weak), Err(JwkError::WeakRsa(1024)));
        let mut enc = rfc_key();
        enc["use"] = json!("enc");
        assert!(matches!(PublicJwk::from_json(&enc), Err(JwkError::NotForSigning(_))));
    }

    #[test]
    fn algorithms_follow_key_type_and_own_alg() {
        let rsa = PublicJwk::from_json(&rfc_key()).unwrap();
        assert!(rsa.accepts(Algorithm::RS256));
        assert!(!rsa.accepts(Algorithm::RS512), "the JWK pins RS256");
        assert!(!rsa.accepts(Algorithm::HS256));
        assert!(!rsa.accepts(Algorithm::ES256));
        let mut unpinned = rfc_key();
        unpinned.as_object_mut().unwrap().remove("alg");
        let rsa = PublicJwk::from_json(&unpinned).unwrap();
        assert!(rsa.accepts(Algorithm::PS256));
        assert!(!rsa.accepts(Algorithm::HS256), "HMAC is never accepted");
        let mut hs = rfc_key();
        hs["alg"] = json!("HS256");
        assert!(matches!(PublicJwk::from_json(&hs), Err(JwkError::UnsupportedAlg(_))));
        let mut mismatch = rfc_key();
        mismatch["alg"] = json!("ES256");
        assert!(matches!(PublicJwk::from_json(&mismatch), Err(JwkError::AlgMismatch { .. })));
    }

    #[test]
    fn set_selection_by_kid_or_only_key() {
        let set = PublicJwkSet::from_json(&json!({"keys": [rfc_key()]})).unwrap();
        assert!(set.select(Some("2011-04-29")).is_some());
        assert!(set.select(Some("other")).is_none());
        assert!(set.select(None).is_some(), "a lone key is used when no kid is given");
        assert!(PublicJwkSet::from_json(&json!({"keys": []})).is_err());
        assert!(PublicJwkSet::from_json(&json!([rfc_key()])).is_err());
    }
}
