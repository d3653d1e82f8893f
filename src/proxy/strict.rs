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
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Version};
use pingora::http::RequestHeader;

/// The gateway's identity headers (`X-OADA-Client-Id`, ...) share this prefix (header names are
/// lower case once parsed).
const IDENTITY_HEADER_PREFIX: &str = "x-oada-";

/// Limits on a parsed request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_total: usize,
    pub max_line: usize,
    pub allow_trace: bool,
    /// Forward header names with underscores (`server.underscores_in_headers`).
    pub pass_underscores: bool,
}

/// What the gateway needs to know about a request head, gathered in the one pass that checks it
/// so that the proxy path does not look the same headers up again and again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadFacts {
    has_host: bool,
    has_transfer_encoding: bool,
    /// The first `Content-Length` value is not `0`.
    nonzero_length: bool,
    /// `Content-Length` is repeated or a list (`5, 5`): the upstream gets one value.
    length_needs_collapse: bool,
    has_expect: bool,
    expects_continue: bool,
    asks_upgrade: bool,
    /// The client sent a header named `X-OADA-*`: the gateway's identity headers' namespace.
    has_identity_headers: bool,
    /// The client sent `traceparent` (W3C Trace Context).
    carries_trace_context: bool,
    /// The client sent `X-Forwarded-For` (the gateway appends to it).
    has_forwarded_for: bool,
    /// A header name has an underscore (`X_OADA_User_Id`).
    has_underscored_names: bool,
}

impl HeadFacts {
    /// Does the request have a body the proxy will read?
    pub fn has_body(&self) -> bool {
        self.has_transfer_encoding || self.nonzero_length
    }

    /// Did the client ask to be told to go on before sending its body (RFC 9110 §10.1.1)?
    pub fn expects_continue(&self) -> bool {
        self.expects_continue
    }

    /// Did the client ask for a protocol upgrade (so that a 101 from the upstream is solicited)?
    pub fn asks_upgrade(&self) -> bool {
        self.asks_upgrade
    }

    /// Did the client send headers in the namespace of those the gateway sets (`X-OADA-*`)?
    pub fn has_identity_headers(&self) -> bool {
        self.has_identity_headers
    }

    /// Did the client send a `traceparent` to continue?
    pub fn carries_trace_context(&self) -> bool {
        self.carries_trace_context
    }

    /// Did the client send `X-Forwarded-For`?
    pub fn has_forwarded_for(&self) -> bool {
        self.has_forwarded_for
    }

    /// Did the client send a header name with an underscore?
    pub fn has_underscored_names(&self) -> bool {
        self.has_underscored_names
    }
}

/// Checks a request head; `Err(reply)` when the request must not be handled.
pub fn check_head(req: &RequestHeader, limits: &HeadLimits) -> Result<HeadFacts, Reply> {
    if req.method == Method::TRACE && !limits.allow_trace {
        return Err(Reply::error(405, "method_not_allowed", "TRACE is not allowed").with_header("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
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
    let mut facts = HeadFacts::default();
    let mut lengths = 0u8;
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
        if name == HOST {
            facts.has_host = true;
        } else if name == CONTENT_LENGTH {
            let value = value.as_bytes();
            if lengths == 0 {
                let first = value.split(|b| *b == b',').next().unwrap_or_default().trim_ascii();
                facts.nonzero_length = first != b"0";
            }
            lengths = lengths.saturating_add(1);
            facts.length_needs_collapse |= lengths > 1 || value.contains(&b',');
        } else if name == TRANSFER_ENCODING {
            facts.has_transfer_encoding = true;
        } else if name == EXPECT {
            facts.has_expect = true;
            facts.expects_continue |= req.version == Version::HTTP_11 && value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name == UPGRADE {
            facts.asks_upgrade = true;
        } else if name.as_str().starts_with(IDENTITY_HEADER_PREFIX) {
            facts.has_identity_headers = true;
        } else if name.as_str() == "traceparent" {
            facts.carries_trace_context = true;
        } else if name.as_str() == "x-forwarded-for" {
            facts.has_forwarded_for = true;
        } else if name.as_str().as_bytes().contains(&b'_') {
            facts.has_underscored_names = true;
        }
    }
    if total > limits.max_total {
        return Err(Reply::error(
            431,
            "invalid_request",
            format!("the request head is larger than {} bytes", limits.max_total),
        ));
    }
    if req.version == Version::HTTP_11 && !facts.has_host {
        return Err(Reply::error(400, "invalid_request", "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)"));
    }
    Ok(facts)
}

/// Header namespaces only the gateway writes to (once `_` reads as `-`).
const GATEWAY_NAMESPACES: [&str; 3] = [IDENTITY_HEADER_PREFIX, "x-forwarded-", "forwarded"];

/// Removes what a client may not say to the upstream: every `X-OADA-*` field, every name with an
/// underscore that folds into a gateway namespace (`X_OADA_User_Id`, `X_Forwarded_For`: CGI, WSGI
/// and Rack read `_` and `-` alike), and, unless `pass_underscores`, every underscored name.
pub fn remove_client_identity(req: &mut RequestHeader, pass_underscores: bool) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            if name.starts_with(IDENTITY_HEADER_PREFIX) {
                return true;
            }
            if !name.contains('_') {
                return false;
            }
            let folded = name.replace('_', "-");
            !pass_underscores || GATEWAY_NAMESPACES.iter().any(|ns| folded.starts_with(ns))
        })
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Rewrites the request the upstream will get; `head` are the facts `check_head` gathered from
/// the client's request, `host` is the gateway's own authority, for HTTP/1.0 requests that name
/// none.
pub fn normalize_upstream(req: &mut RequestHeader, head: &HeadFacts, host: &str) -> pingora::Result<()> {
    // Pingora keeps an absolute-form target verbatim for the wire (its `uri` holds only the
    // path), so the target is rewritten from the path and query whenever the two differ.
    let origin_form = req.uri.path_and_query().map_or("/", |p| p.as_str());
    if req.uri.scheme().is_some() || req.uri.authority().is_some() || req.raw_path() != origin_form.as_bytes() {
        let uri = origin_form
            .parse()
            .map_err(|_| pingora::Error::explain(pingora::ErrorType::InternalError, "origin-form target"))?;
        req.set_uri(uri);
    }
    if !head.has_host {
        req.insert_header(HOST, host)?;
    }
    if head.length_needs_collapse {
        // Pingora has already refused differing values; what is left are copies of one.
        let first = req.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let value = first.split(',').next().unwrap_or_default().trim().to_string();
        req.insert_header(CONTENT_LENGTH, value)?;
    }
    if head.has_expect {
        req.remove_header(&EXPECT);
    }
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
            pass_underscores: false,
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
        let head = check_head(&r, &limits()).unwrap();
        assert!(head.has_body() && !head.expects_continue(), "Expect is only honoured on HTTP/1.1");
        normalize_upstream(&mut r, &head, "api.example").unwrap();
        assert_eq!(r.uri.to_string(), "/x?y=1");
        assert_eq!(r.raw_path(), b"/x?y=1", "what is written on the wire");
        assert_eq!(r.headers.get(HOST).unwrap(), "api.example");
        assert_eq!(r.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        assert_eq!(r.headers.get(CONTENT_LENGTH).unwrap(), "5");
        assert!(r.headers.get(EXPECT).is_none());
    }

    #[test]
    fn head_facts() {
        let facts = |headers: &[(&str, &str)]| check_head(&request("POST", "/", &[&[("Host", "h")], headers].concat()), &limits()).unwrap();
        assert!(!facts(&[]).has_body());
        assert!(!facts(&[("Content-Length", "0")]).has_body());
        assert!(facts(&[("Content-Length", "12")]).has_body());
        assert!(facts(&[("Transfer-Encoding", "chunked")]).has_body());
        assert!(facts(&[("Expect", " 100-Continue ")]).expects_continue());
        assert!(!facts(&[("Expect", "something-else")]).expects_continue());
        assert!(facts(&[("Upgrade", "websocket")]).asks_upgrade());
        assert!(!facts(&[]).asks_upgrade());
        assert!(facts(&[("X-OADA-Scope", "all")]).has_identity_headers());
        assert!(!facts(&[("X-OADA", "no")]).has_identity_headers());
        // one value is forwarded as is, copies are collapsed
        let mut r = request("POST", "/", &[("Host", "h"), ("Content-Length", "7")]);
        let head = check_head(&r, &limits()).unwrap();
        normalize_upstream(&mut r, &head, "gw").unwrap();
        assert_eq!(r.headers.get(HOST).unwrap(), "h");
        assert_eq!(r.headers.get(CONTENT_LENGTH).unwrap(), "7");
        let mut r = request("POST", "/", &[("Host", "h"), ("Content-Length", "7"), ("Content-Length", "7")]);
        let head = check_head(&r, &limits()).unwrap();
        normalize_upstream(&mut r, &head, "gw").unwrap();
        assert_eq!(r.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
    }

    #[test]
    fn client_identity_and_underscored_names_are_removed() {
        let sent = [
            ("Host", "h"),
            ("X-OADA-Role", "admin"),
            ("X-OADA-Issuer", "https://evil.example"),
            ("x-oada-user-id", "frank"),
            ("X_OADA_User_Id", "frank"),
            ("X_Forwarded_For", "10.0.0.1"),
            ("My_Header", "kept only when allowed"),
            ("X-Other", "kept"),
        ];
        let mut r = request("GET", "/", &sent);
        let facts = check_head(&r, &HeadLimits { ..limits() }).unwrap();
        assert!(facts.has_identity_headers() && facts.has_underscored_names());
        remove_client_identity(&mut r, false);
        let mut left: Vec<&str> = r.headers.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, ["host", "x-other"]);

        let mut r = request("GET", "/", &sent);
        remove_client_identity(&mut r, true);
        let mut left: Vec<&str> = r.headers.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, ["host", "my_header", "x-other"], "underscores pass, but never into the gateway's namespaces");
    }
}
