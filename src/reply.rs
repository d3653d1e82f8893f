//! Responses the gateway makes itself (errors, hosted endpoints, admin): status, headers, body.
//!
//! Every error body has the RFC 6749 / 6750 / 7591 shape
//! `{"error": "...", "error_description": "..."}`.

use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).expect("serializing gateway JSON cannot fail");
        Reply {
            status,
            headers: vec![("Content-Type", "application/json".to_string())],
            body: Bytes::from(body),
        }
    }

    /// A reply without a body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// An error reply with the standard body.
    pub fn error(status: u16, error: &str, description: impl Into<Cow<'static, str>>) -> Reply {
        let description = description.into();
        Reply::json(
            status,
            &ErrorBody {
                error,
                error_description: &description,
            },
        )
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// `Cache-Control: no-store` (and `Pragma: no-cache` for HTTP/1.0 caches): for anything that
    /// carries credentials or per-client answers.
    pub fn no_store(self) -> Reply {
        self.with_header("Cache-Control", "no-store")
            .with_header("Pragma", "no-cache")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Quotes `value` as an HTTP quoted-string (RFC 9110 §5.6.4).
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if c.is_control() {
            continue;
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let r = Reply::error(401, "invalid_token", "expired");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({"error": "invalid_token", "error_description": "expired"}));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
