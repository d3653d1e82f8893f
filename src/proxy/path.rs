//! Request paths the gateway refuses to route.
//!
//! A path that an upstream could normalize into another route (`/health/../admin`,
//! `/health/%2e%2e/admin`, encoded slashes or backslashes) would let a request pass the check of
//! one route and reach another. Such paths are refused outright rather than normalized.

/// `Err(reason)` when `path` must not be routed.
pub fn check(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the request path must start with /");
    }
    // fast path: nothing that could hide a dot segment or a separator
    if !path.contains(['.', '%', '\\']) {
        return Ok(());
    }
    if path.contains('\\') {
        return Err("backslashes are not allowed in the request path");
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err("encoded slashes are not allowed in the request path");
    }
    if lower.contains("%00") {
        return Err("encoded NUL is not allowed in the request path");
    }
    for segment in lower.split('/') {
        let decoded = segment.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err("dot segments (. and ..) are not allowed in the request path");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_paths_pass() {
        for p in ["/", "/observations", "/observations/7", "/files/a.json", "/v1.2/x", "/a%20b"] {
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
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "relative",
        ] {
            assert!(check(p).is_err(), "{p}");
        }
    }
}
