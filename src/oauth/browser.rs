//! A person's browser: the session cookie, and the random values that bind a form to the session
//! that was shown it.
//!
//! The cookie holds 256 random bits; the store knows the session only by their hash, so a store
//! dump opens no session. It is `HttpOnly`, `SameSite=Lax` (the way back from a client arrives as
//! a top-level navigation) and `Secure` whenever the issuer is https. Signing in replaces the
//! session and its cookie (no session fixation).

use http::HeaderMap;

pub const SESSION_COOKIE: &str = "oada_gw_session";

/// How the session cookie is written for this gateway.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    pub secure: bool,
    /// The issuer's path (`/` when it has none): the cookie goes to the hosted endpoints only.
    pub path: String,
}

impl CookiePolicy {
    pub fn new(issuer: &crate::config::Issuer) -> Self {
        let path = if issuer.path_prefix().is_empty() { "/".to_string() } else { issuer.path_prefix().to_string() };
        CookiePolicy {
            secure: issuer.as_str().starts_with("https://"),
            path,
        }
    }

    /// `Set-Cookie` for a session cookie `value` living `max_age` seconds.
    pub fn set(&self, value: &str, max_age: u64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            self.path,
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{}",
            self.path,
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session cookie's value, when the request carries a well-formed one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The store key of a session: the hash of its cookie value.
pub fn session_key(cookie_value: &str) -> String {
    blake3::hash(cookie_value.as_bytes()).to_hex().to_string()
}

/// A new session cookie value (256 random bits).
pub fn new_session_value() -> String {
    crate::ids::random_id(32)
}

/// Do a form's CSRF value and the expected one match (in constant time)?
pub fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| crate::secrets::plain_matches(expected, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_are_read_and_written_strictly() {
        let value = new_session_value();
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}={value}; b=2")).unwrap());
        assert_eq!(session_cookie(&h), Some(value.as_str()));
        h.insert(http::header::COOKIE, HeaderValue::from_static("oada_gw_session=short"));
        assert_eq!(session_cookie(&h), None);
        let policy = CookiePolicy { secure: true, path: "/".into() };
        let set = policy.set(&value, 60);
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=60", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!CookiePolicy { secure: false, path: "/".into() }.set(&value, 1).contains("Secure"));
        assert_ne!(session_key(&value), value);
    }
}
