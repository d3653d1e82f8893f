//! Fetching key sets from URLs: partners' `jwks_uri` and trusted signers' `jku` / trusted lists.
//!
//! Fetches are bounded (time, size, no redirects) and cached; a signature naming a `kid` the
//! cached set lacks triggers one refetch (the partner may have rotated keys), at most every
//! [`REFRESH_INTERVAL`] per URL so that unknown kids cannot make the gateway hammer a host.

use crate::fetch::{read_bounded, BodyError};
use super::{PublicJwk, PublicJwkSet};
use moka::sync::Cache;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long a fetched key set is used before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Minimum time between forced refetches of one URL.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
const MAX_BYTES: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks a URL the gateway will fetch keys from: https, or http on a loopback host only
/// (a key set fetched over plain http on a network could be swapped in transit).
pub fn validate_fetch_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{text}` has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("`{text}` must use https (http only for loopback hosts)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not contain credentials"));
    }
    Ok(url.to_string())
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("fetching {url} failed: {reason}")]
pub struct FetchError {
    pub url: String,
    pub reason: String,
}

pub struct KeyFetcher {
    http: reqwest::Client,
    sets: Cache<String, Arc<PublicJwkSet>>,
    documents: Cache<String, Arc<Value>>,
    recently_forced: Cache<String, ()>,
}

impl Default for KeyFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyFetcher {
    pub fn new() -> Self {
        KeyFetcher {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("oada-gateway/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client"),
            sets: Cache::builder().max_capacity(10_000).time_to_live(CACHE_TTL).build(),
            documents: Cache::builder().max_capacity(1_000).time_to_live(CACHE_TTL).build(),
            recently_forced: Cache::builder().max_capacity(10_000).time_to_live(REFRESH_INTERVAL).build(),
        }
    }

    /// GETs `url` as JSON, at most [`MAX_BYTES`].
    async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let fail = |reason: String| FetchError {
            url: url.to_string(),
            reason,
        };
        validate_fetch_url(url).map_err(fail)?;
        let mut response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let body = read_bounded(&mut response, MAX_BYTES).await.map_err(|e| {
            fail(match e {
                BodyError::TooLarge => format!("the document is larger than {MAX_BYTES} bytes"),
                BodyError::Read(e) => e.to_string(),
            })
        })?;
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    /// A JSON document (such as an OADA trusted list), cached.
    pub async fn document(&self, url: &str) -> Result<Arc<Value>, FetchError> {
        if let Some(doc) = self.documents.get(url) {
            return Ok(doc);
        }
        let doc = Arc::new(self.get_json(url).await?);
        self.documents.insert(url.to_string(), doc.clone());
        Ok(doc)
    }

    async fn fetch_set(&self, url: &str) -> Result<Arc<PublicJwkSet>, FetchError> {
        let value = self.get_json(url).await?;
        let set = Arc::new(PublicJwkSet::from_json(&value).map_err(|e| FetchError {
            url: url.to_string(),
            reason: e.to_string(),
        })?);
        self.sets.insert(url.to_string(), set.clone());
        Ok(set)
    }

    /// The key set at `url`, cached.
    pub async fn key_set(&self, url: &str) -> Result<Arc<PublicJwkSet>, FetchError> {
        match self.sets.get(url) {
            Some(set) => Ok(set),
            None => self.fetch_set(url).await,
        }
    }

    /// The key a signature names (by `kid`, or the only key) in the set at `url`; refetches once
    /// when the cached set lacks it.
    pub async fn find_key(&self, url: &str, kid: Option<&str>) -> Result<Option<PublicJwk>, FetchError> {
        let set = self.key_set(url).await?;
        if let Some(key) = set.select(kid) {
            return Ok(Some(key.clone()));
        }
        if self.recently_forced.contains_key(url) {
            return Ok(None);
        }
        self.recently_forced.insert(url.to_string(), ());
        let set = self.fetch_set(url).await?;
        Ok(set.select(kid).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_urls_must_be_https_or_loopback() {
        assert!(validate_fetch_url("https://keys.example/jwks").is_ok());
        assert!(validate_fetch_url("http://127.0.0.1:9/jwks").is_ok());
        assert!(validate_fetch_url("http://localhost/jwks").is_ok());
        assert!(validate_fetch_url("http://keys.example/jwks").is_err());
        assert!(validate_fetch_url("file:///etc/passwd").is_err());
        assert!(validate_fetch_url("https://user:pw@keys.example/").is_err());
        assert!(validate_fetch_url("not a url").is_err());
    }
}
