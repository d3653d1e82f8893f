//! OADA software statements (RFC 7591 §2.3): signed registration metadata, trusted when signed
//! by a key of a configured trusted list.

use crate::keys::PublicJwkSet;
use serde_json::Value;

/// The contents of an OADA trusted list.
#[derive(Debug, Default)]
pub struct TrustedList {
    /// Key-set URLs whose keys are trusted.
    pub jkus: Vec<String>,
    /// Keys trusted directly.
    pub jwks: Option<PublicJwkSet>,
}

/// Parses an OADA trusted list: v1 is an array of jku URLs, v2 is
/// `{"version": "2", "jkus": [...], "jwks": {"keys": [...]}}`.
pub fn parse_trusted_list(value: &Value) -> Result<TrustedList, String> {
    let strings = |v: &Value, what: &str| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{what} must be an array of URLs"))?
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| format!("{what} must hold only strings")))
            .collect()
    };
    match value {
        Value::Array(_) => Ok(TrustedList {
            jkus: strings(value, "a v1 trusted list")?,
            jwks: None,
        }),
        Value::Object(obj) if obj.get("version").and_then(Value::as_str) == Some("2") => {
            let jkus = match obj.get("jkus") {
                Some(v) => strings(v, "jkus")?,
                None => Vec::new(),
            };
            let jwks = match obj.get("jwks") {
                Some(v) => Some(PublicJwkSet::from_json(v).map_err(|e| format!("jwks: {e}"))?),
                None => None,
            };
            Ok(TrustedList { jkus, jwks })
        }
        _ => Err("not an OADA trusted list: expected an array of jku URLs (v1) or an object with version \"2\"".into()),
    }
}
