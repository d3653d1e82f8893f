//! Redaction of log text the gateway does not compose itself: Pingora's log lines and error
//! messages (which quote request lines with their query strings, and raw buffers of malformed
//! messages with their headers). Nothing that could be a credential survives: query strings,
//! credentials after `Bearer`/`Basic`, values of credential-carrying headers, JWTs, raw buffer
//! dumps and credential-named form parameters.

use regex::Regex;
use std::borrow::Cow;
use std::sync::OnceLock;

struct Patterns {
    /// Pingora's raw buffer dumps (`buf: ...`) up to the next `cause:` or the end.
    buffer: Regex,
    /// A query string in anything URL-like: from `?` to the next whitespace, quote or comma.
    query: Regex,
    scheme_credentials: Regex,
    credential_headers: Regex,
    jwt: Regex,
    credential_params: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        buffer: Regex::new(r"(?s)buf: .*?(, cause:|cause:|$)").expect("valid regex"),
        query: Regex::new(r#"\?[^\s"',]*"#).expect("valid regex"),
        scheme_credentials: Regex::new(r"(?i)\b(bearer|basic)\s+[^\s,;\\]+").expect("valid regex"),
        credential_headers: Regex::new(
            r#"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-oada-client-id|x-oada-user-id)(\s*[:=]\s*)[^\r\n\\"]*"#,
        )
        .expect("valid regex"),
        jwt: Regex::new(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*").expect("valid regex"),
        credential_params: Regex::new(
            r"(?i)\b(access_token|refresh_token|id_token|code|code_verifier|password|client_secret|client_assertion|assertion|token|state)=[^&\s]*",
        )
        .expect("valid regex"),
    })
}

/// `text` with everything that could be a credential replaced.
pub fn text(text: &str) -> Cow<'_, str> {
    // fast path: nothing that any rule could match
    if !text.contains(['?', '=', ':']) && !text.contains("eyJ") && !text.to_ascii_lowercase().contains("bearer") && !text.to_ascii_lowercase().contains("basic") {
        return Cow::Borrowed(text);
    }
    let p = patterns();
    let mut out = p.buffer.replace_all(text, "buf: <redacted>$1").into_owned();
    out = p.jwt.replace_all(&out, "<jwt>").into_owned();
    out = p.credential_headers.replace_all(&out, "$1$2<redacted>").into_owned();
    out = p.scheme_credentials.replace_all(&out, "$1 <redacted>").into_owned();
    out = p.credential_params.replace_all(&out, "$1=<redacted>").into_owned();
    out = p.query.replace_all(&out, "?<redacted>").into_owned();
    Cow::Owned(out)
}

/// A request as error logs may name it: method and path, never the query string.
pub fn request_summary(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

    #[test]
    fn query_strings_and_tokens_go() {
        let line = format!("Fail to proxy: Peer: 127.0.0.1:9, status: 502, GET /observations?access_token={JWT}&x=1, Host: h");
        let r = text(&line);
        assert!(!r.contains(JWT) && !r.contains("eyJ"), "{r}");
        assert!(!r.contains("x=1"), "{r}");
        assert!(r.contains("GET /observations?<redacted>"), "{r}");
    }

    #[test]
    fn raw_buffers_and_credential_headers_go() {
        let line = r#"InvalidHTTPHeader context: buf: "HTTP/1.1 200 OK\r\nSet-Cookie: session=s3cr3t\r\n\r\n" cause: invalid header"#;
        let r = text(line);
        assert!(!r.contains("s3cr3t"), "{r}");
        assert!(r.contains("cause: invalid header"), "{r}");
        for line in [
            "Authorization: Bearer abc.def",
            "authorization=Basic dXNlcjpwYXNz",
            "cookie: sid=42; other=1",
            "password=hunter2&username=frank",
        ] {
            let r = text(line);
            for secret in ["abc.def", "dXNlcjpwYXNz", "sid=42", "hunter2"] {
                assert!(!r.contains(secret), "{line} -> {r}");
            }
        }
    }

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(text("upstream weather could not be reached"), Cow::Borrowed(_)));
    }
}
