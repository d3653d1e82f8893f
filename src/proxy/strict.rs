//! Strict HTTP: what is refused on the way in, and how the request is rewritten on the way out,
//! so that the upstream sees one unambiguous request whatever the client sent.
//!
//! In: TRACE (unless allowed), HTTP/1.1 without `Host` (RFC 9112 §3.2), request lines and header
//! fields longer than a line may be, and heads larger than the budget (the connection's stream
//! bounds the bytes read; this bounds the parsed result, pipelined requests included).
//! Pingora itself refuses duplicate `Host`, a `Host` that differs from an absolute-form target,
//! differing `Content-Length` values, and `Transfer-Encoding` with `Content-Length`.
//!
//! Out: absolute-form targets become origin-form, an HTTP/1.0 request without `Host` gets the
//! gateway's, repeated identical `Content-Length` values become one, and `Expect` is answered by
//! the gateway rather than forwarded.

use crate::reply::Reply;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora::http::RequestHeader;

/// Limits on a parsed request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_total: usize,
    pub max_line: usize,
    pub allow_trace: bool,
}

/// `Err(reply)` when the request must not be handled.
pub fn check_head(req: &RequestHeader, limits: &HeadLimits) -> Result<(), Reply> {
    if req.method == Method::TRACE && !limits.allow_trace {
        return Err(Reply::error(405, "method_not_allowed", "TRACE is not allowed").with_header("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    }
    if req.version == Version::HTTP_11 && !req.headers.contains_key(HOST) {
        return Err(Reply::error(400, "invalid_request", "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)"));
    }
    // request line: METHOD SP target SP HTTP/1.1 CRLF
    let request_line = req.method.as_str().len() + req.raw_path().len() + 12;
    if request_line > limits.max_line {
        return Err(Reply::error(
            414,
            "invalid_request",
            format!("the request line is longer than {} bytes", limits.max_line),
        ));
    }
    let mut total = request_line;
    for (name, value) in &req.headers {
        let line = name.as_str().len() + value.len() + 4;
        if line > limits.max_line {
            return Err(Reply::error(
                431,
                "invalid_request",
                format!("a header field is longer than {} bytes", limits.max_line),
            ));
        }
        total += line;
    }
    if total > limits.max_total {
        return Err(Reply::error(
            431,
            "invalid_request",
            format!("the request head is larger than {} bytes", limits.max_total),
        ));
    }
    Ok(())
}

/// Does the request have a body the proxy will read?
pub fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(TRANSFER_ENCODING)
        || req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|n| n.trim() != "0"))
}

/// Did the client ask to be told to go on before sending its body (RFC 9110 §10.1.1)?
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.version == Version::HTTP_11
        && req
            .headers
            .get(EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// Did the client ask for a protocol upgrade (so that a 101 from the upstream is solicited)?
pub fn asks_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
}

/// Rewrites the request the upstream will get; `host` is the gateway's own authority, for
/// HTTP/1.0 requests that name none.
pub fn normalize_upstream(req: &mut RequestHeader, host: &str) -> pingora::Result<()> {
    if req.uri.scheme().is_some() || req.uri.authority().is_some() {
        let origin_form = req.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let uri = origin_form
            .parse()
            .map_err(|_| pingora::Error::explain(pingora::ErrorType::InternalError, "origin-form target"))?;
        req.set_uri(uri);
    }
    if !req.headers.contains_key(HOST) {
        req.insert_header(HOST, host)?;
    }
    let mut lengths = req.headers.get_all(CONTENT_LENGTH).iter();
    let first = lengths.next().and_then(|v| v.to_str().ok()).map(str::to_string);
    let repeated = lengths.next().is_some();
    if let Some(first) = first {
        if repeated || first.contains(',') {
            // Pingora has already refused differing values; what is left are copies of one.
            let value = first.split(',').next().unwrap_or("").trim().to_string();
            req.insert_header(CONTENT_LENGTH, value)?;
        }
    }
    req.remove_header(&EXPECT);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits {
            max_total: 4096,
            max_line: 1024,
            allow_trace: false,
        }
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn host_is_required_on_http11_only() {
        let mut r = request("GET", "/x", &[]);
        assert_eq!(check_head(&r, &limits()).unwrap_err().status, 400);
        r.set_version(Version::HTTP_10);
        assert!(check_head(&r, &limits()).is_ok());
        assert!(check_head(&request("GET", "/x", &[("Host", "h")]), &limits()).is_ok());
    }

    #[test]
    fn trace_and_long_lines_are_refused() {
        assert_eq!(check_head(&request("TRACE", "/", &[("Host", "h")]), &limits()).unwrap_err().status, 405);
        let long_path = format!("/{}", "a".repeat(2000));
        assert_eq!(check_head(&request("GET", &long_path, &[("Host", "h")]), &limits()).unwrap_err().status, 414);
        let long_value = "v".repeat(2000);
        assert_eq!(
            check_head(&request("GET", "/", &[("Host", "h"), ("X-Big", &long_value)]), &limits()).unwrap_err().status,
            431
        );
        let many: Vec<(String, String)> = (0..10).map(|i| (format!("X-{i}"), "v".repeat(900))).collect();
        let mut r = request("GET", "/", &[("Host", "h")]);
        for (n, v) in &many {
            r.append_header(n.clone(), v.as_str()).unwrap();
        }
        assert_eq!(check_head(&r, &limits()).unwrap_err().status, 431);
    }

    #[test]
    fn upstream_request_is_normalized() {
        let mut r = request("POST", "http://evil.example/x?y=1", &[("Content-Length", "5, 5"), ("Expect", "100-continue")]);
        r.set_version(Version::HTTP_10);
        normalize_upstream(&mut r, "api.example").unwrap();
        assert_eq!(r.uri.to_string(), "/x?y=1");
        assert_eq!(r.headers.get(HOST).unwrap(), "api.example");
        assert_eq!(r.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        assert_eq!(r.headers.get(CONTENT_LENGTH).unwrap(), "5");
        assert!(r.headers.get(EXPECT).is_none());
    }
}
