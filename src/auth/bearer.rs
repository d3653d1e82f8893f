//! Finding the bearer token in a request (RFC 6750 §2).

use http::header::AUTHORIZATION;
use http::HeaderMap;
use std::borrow::Cow;

/// Why no token could be taken from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No bearer credentials at all (none, or another scheme): 401 without an error code
    /// (RFC 6750 §3.1).
    Missing,
    /// The request is malformed: 400 `invalid_request`.
    InvalidRequest(&'static str),
}

/// Longest token accepted; ours are well under 2 KiB. Refused before any hashing or parsing.
pub const MAX_TOKEN_LEN: usize = 8192;

const QUERY_PARAM: &str = "access_token";

/// Returns the token from `Authorization: Bearer <token>` (scheme case-insensitive), or from the
/// `access_token` query parameter when `allow_query` is set.
pub fn extract<'a>(headers: &'a HeaderMap, query: Option<&'a str>, allow_query: bool) -> Result<Cow<'a, str>, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest("more than one Authorization header"));
    }
    let from_header = match header {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| BearerError::InvalidRequest("the Authorization header is not visible ASCII"))?;
            match value.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let token = rest.trim_matches(' ');
                    if token.is_empty() {
                        return Err(BearerError::InvalidRequest("the Bearer credentials are empty"));
                    }
                    Some(token)
                }
                None if value.eq_ignore_ascii_case("bearer") => {
                    return Err(BearerError::InvalidRequest("the Bearer credentials are empty"));
                }
                // another scheme (Basic, ...) carries no bearer token
                _ => None,
            }
        }
    };
    let from_query = query.and_then(query_token);
    match (from_header, from_query) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest(
            "the token was sent both in the Authorization header and in the query string",
        )),
        (Some(token), None) => Ok(Cow::Borrowed(token)),
        (None, Some(_)) if !allow_query => Err(BearerError::InvalidRequest(
            "access tokens in the query string are not accepted; send an Authorization: Bearer header",
        )),
        (None, Some(raw)) => Ok(percent_decode(raw)),
        (None, None) => Err(BearerError::Missing),
    }
}

/// The raw (still percent-encoded) value of the `access_token` query parameter.
fn query_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == QUERY_PARAM).then_some(value)
    })
}

/// Removes `access_token` from a query string, so that it is never forwarded upstream.
pub fn strip_query_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(n, _)| n) != QUERY_PARAM)
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return Cow::Borrowed(raw);
    }
    let decoded: String = url::form_urlencoded::parse(format!("t={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Cow::Owned(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for v in ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER  abc.def.ghi"] {
            assert_eq!(extract(&headers(&[v]), None, false).unwrap(), "abc.def.ghi");
        }
    }

    #[test]
    fn missing_or_other_scheme_is_missing() {
        assert_eq!(extract(&headers(&[]), None, false), Err(BearerError::Missing));
        assert_eq!(extract(&headers(&["Basic dXNlcjpwYXNz"]), None, false), Err(BearerError::Missing));
    }

    #[test]
    fn malformed_requests() {
        assert!(matches!(extract(&headers(&["Bearer"]), None, false), Err(BearerError::InvalidRequest(_))));
        assert!(matches!(extract(&headers(&["Bearer "]), None, false), Err(BearerError::InvalidRequest(_))));
        assert!(matches!(
            extract(&headers(&["Bearer a", "Bearer b"]), None, false),
            Err(BearerError::InvalidRequest(_))
        ));
    }

    #[test]
    fn query_tokens_refused_unless_allowed() {
        let h = headers(&[]);
        assert!(matches!(extract(&h, Some("x=1&access_token=t0k"), false), Err(BearerError::InvalidRequest(_))));
        assert_eq!(extract(&h, Some("x=1&access_token=t0k"), true).unwrap(), "t0k");
        assert_eq!(extract(&h, Some("access_token=a%2Bb"), true).unwrap(), "a+b");
        // a parameter merely containing the name is not the token
        assert_eq!(extract(&h, Some("my_access_token=x"), false), Err(BearerError::Missing));
        assert!(matches!(
            extract(&headers(&["Bearer a"]), Some("access_token=b"), true),
            Err(BearerError::InvalidRequest(_))
        ));
    }

    #[test]
    fn strips_token_from_query() {
        assert_eq!(strip_query_token("a=1&access_token=x&b=2"), "a=1&b=2");
        assert_eq!(strip_query_token("access_token=x"), "");
    }
}
