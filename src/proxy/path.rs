//! Request paths the gateway refuses to route, and the form routes are matched on.
//!
//! A path that an upstream could normalize into another route (`/health/../admin`,
//! `/health/%2e%2e/admin`, `/health/..;/admin` behind a servlet container, `%252e` decoded twice,
//! an overlong UTF-8 `%c0%ae`, IIS's `%u002e`, encoded slashes or backslashes) would let a request
//! pass the check of one route and reach another. Such paths are refused outright rather than
//! normalized. Path parameters (`;jsessionid=...`) are allowed on ordinary segments, but routes
//! match on the path without them, as a servlet upstream would read it.

use std::borrow::Cow;

/// `Err(reason)` when `path` must not be routed.
pub fn check(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the request path must start with /");
    }
    // fast path: nothing that could hide a dot segment, a separator or a parameter
    if !path.contains(['.', '%', '\\', ';']) {
        return Ok(());
    }
    if path.contains('\\') {
        return Err("backslashes are not allowed in the request path");
    }
    if path.contains('%') {
        check_escapes(path)?;
    }
    for segment in path.split('/') {
        // what a servlet container makes of the segment: parameters dropped, escapes decoded
        let name = segment.split(';').next().unwrap_or("");
        let decoded = name.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err("dot segments (. and .., also with ;parameters) are not allowed in the request path");
        }
    }
    Ok(())
}

/// Percent-escapes: each must be `%XX`; none may encode a separator, a control character or a
/// `%` (double encoding); the decoded bytes must be valid UTF-8 (which refuses overlong forms).
fn check_escapes(path: &str) -> Result<(), &'static str> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        if matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
            return Err("%u escapes are not allowed in the request path");
        }
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            return Err("a % in the request path must start a %XX escape");
        };
        let byte = (hi * 16 + lo) as u8;
        match byte {
            b'/' | b'\\' => return Err("encoded slashes are not allowed in the request path"),
            b'%' => return Err("double-encoded escapes (%25) are not allowed in the request path"),
            0..=0x1f | 0x7f => return Err("encoded control characters are not allowed in the request path"),
            _ => decoded.push(byte),
        }
        i += 3;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err("the request path decodes to invalid or overlong UTF-8");
    }
    Ok(())
}

/// The path routes are matched on: `path` without `;parameters` on its segments.
pub fn routing_path(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let stripped: Vec<&str> = path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect();
    Cow::Owned(stripped.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass() {
        for p in ["/", "/observations", "/observations/7", "/files/a.json", "/v1.2/x", "/a%20b", "/caf%C3%A9", "/x;v=1/y"] {
            assert!(check(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn traversal_and_smuggling_refused() {
        for p in [
            "/health/../admin",
            "/health/./x",
            "/health/..",
            "/health/%2e%2e/admin",
            "/health/%2E./admin",
            "/health/..;/admin",
            "/health/..;jsessionid=1/admin",
            "/health/.;x/admin",
            "/health/%2e%2e;x/admin",
            "/health/%252e%252e/admin",
            "/a%252fb",
            "/health/%c0%ae%c0%ae/admin",
            "/health/%e0%80%ae/admin",
            "/health/%u002e%u002e/admin",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%0d%0aX",
            "/a%zz",
            "/a%2",
            "relative",
        ] {
            assert!(check(p).is_err(), "{p}");
        }
    }

    #[test]
    fn routes_match_without_path_parameters() {
        assert_eq!(routing_path("/observations;jsessionid=1"), "/observations");
        assert_eq!(routing_path("/a;x/b;y=2/c"), "/a/b/c");
        assert!(matches!(routing_path("/a/b"), Cow::Borrowed(_)));
    }
}
