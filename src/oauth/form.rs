//! `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2, §4.4.2).

use super::error::OAuthError;
use http::HeaderMap;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Parameters of a form body. Empty values count as omitted; repeated parameters are refused.
#[derive(Debug, Default)]
pub struct Form {
    params: HashMap<String, String>,
}

/// Does the request's `Content-Type` (ignoring parameters such as charset) equal `expected`?
pub fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
        if !content_type_is(headers, FORM_CONTENT_TYPE) {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::invalid_request("the request body is not UTF-8"));
        }
        // one hash lookup per parameter: a body of thousands of distinct names costs linear time
        let mut params: HashMap<String, String> = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            match params.entry(name.into_owned()) {
                Entry::Occupied(e) => {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter `{}` is repeated (RFC 6749 §3.2)",
                        e.key()
                    )));
                }
                Entry::Vacant(e) => {
                    e.insert(value.into_owned());
                }
            }
        }
        Ok(Form { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is required")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn parses_and_treats_empty_as_omitted() {
        let f = Form::parse(&headers("application/x-www-form-urlencoded; charset=UTF-8"), b"grant_type=client_credentials&scope=&x=a%20b").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), None);
        assert_eq!(f.get("x"), Some("a b"));
        assert!(f.require("scope").is_err());
    }

    #[test]
    fn refuses_wrong_type_and_repeats() {
        assert!(Form::parse(&headers("application/json"), b"{}").is_err());
        assert!(Form::parse(&HeaderMap::new(), b"a=b").is_err());
        assert!(Form::parse(&headers(FORM_CONTENT_TYPE), b"scope=a&scope=b").is_err());
    }

    #[test]
    fn many_distinct_names_parse_and_a_late_repeat_is_found() {
        let mut body: String = (0..11_000).map(|i| format!("p{i}=v&")).collect();
        let form = Form::parse(&headers(FORM_CONTENT_TYPE), body.as_bytes()).unwrap();
        assert_eq!(form.get("p10999"), Some("v"));
        body.push_str("p5=again");
        assert!(Form::parse(&headers(FORM_CONTENT_TYPE), body.as_bytes()).is_err());
    }
}
