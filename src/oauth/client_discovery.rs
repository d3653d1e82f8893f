//! OADA client discovery (seed 003): a `client_id` of the form `<id>@<provider>` is described by
//! the provider. When `<provider>` (a host or `host:port`, matched exactly) is trusted, the
//! gateway reads `https://<provider>/.well-known/oada-configuration`, follows its
//! `client_discovery` URL with `?client_id=`, and takes the client's name, contact, redirect URLs,
//! keys, licenses and privacy-and-use page from the answer. An untrusted provider is never
//! contacted.
//!
//! Fetches are https (http only on loopback), without redirects, bounded in size and time, and
//! both answers are cached (bounded; unknown clients briefly) so that a flood of ids cannot make
//! the gateway hammer a provider.

use crate::fetch::{read_bounded, BodyError};
use super::clients::{ClientDisplay, ClientProfile, KeySource, Principal, Trust};
use crate::config::{ClientDiscoveryConfig, GrantTypes};
use crate::keys::PublicJwkSet;
use crate::metrics::Metrics;
use moka::future::Cache;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const MAX_BYTES: usize = 256 * 1024;
/// How long a provider's "no such client" is believed.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client discovery at {provider} failed: {reason}")]
pub struct DiscoveryError {
    pub provider: String,
    pub reason: String,
}

/// `<id>@<provider>`, split at the last `@`.
pub fn split(client_id: &str) -> Option<(&str, &str)> {
    let (id, provider) = client_id.rsplit_once('@')?;
    (!id.is_empty() && !provider.is_empty()).then_some((id, provider))
}

pub struct ClientDiscovery {
    config: ClientDiscoveryConfig,
    http: reqwest::Client,
    /// Provider → its client discovery URL.
    endpoints: Cache<String, Arc<String>>,
    /// client_id → the client (`None`: the provider does not know it).
    clients: Cache<String, Option<Arc<ClientProfile>>>,
    metrics: Arc<Metrics>,
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ClientDiscovery {
    pub fn new(config: ClientDiscoveryConfig, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("oada-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        ClientDiscovery {
            endpoints: Cache::builder().max_capacity(1_000).time_to_live(config.cache_ttl).build(),
            clients: Cache::builder()
                .max_capacity(config.max_entries)
                .expire_after(DiscoveryExpiry {
                    ttl: config.cache_ttl,
                })
                .build(),
            config,
            http,
            metrics,
        }
    }

    /// The provider of a discovery client_id, and whether it is trusted.
    pub fn provider_of<'a>(&self, client_id: &'a str) -> Option<(&'a str, bool)> {
        let (_, provider) = split(client_id)?;
        let trusted = self.config.trusted_providers.iter().any(|p| p.eq_ignore_ascii_case(provider));
        Some((provider, trusted))
    }

    pub fn is_trusted(&self, client_id: &str) -> bool {
        self.provider_of(client_id).is_some_and(|(_, trusted)| trusted)
    }

    fn count(&self, result: &str) {
        self.metrics.client_discovery_fetches.with_label_values(&[result]).inc();
    }

    /// The client a trusted provider describes (cached); `None` when it knows no such client.
    pub async fn find(&self, client_id: &str) -> Result<Option<Arc<ClientProfile>>, DiscoveryError> {
        let Some((provider, true)) = self.provider_of(client_id) else {
            return Ok(None);
        };
        if let Some(cached) = self.clients.get(client_id).await {
            return Ok(cached);
        }
        let provider = provider.to_ascii_lowercase();
        let fail = |reason: String| DiscoveryError {
            provider: provider.clone(),
            reason,
        };
        let endpoint = match self.endpoints.get(&provider).await {
            Some(e) => e,
            None => {
                let scheme = if is_loopback(provider.split(':').next().unwrap_or("")) { "http" } else { "https" };
                let config = self.get_json(&format!("{scheme}://{provider}/.well-known/oada-configuration")).await.map_err(&fail)?;
                let endpoint = config
                    .get("client_discovery")
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail("its oada-configuration has no client_discovery URL".into()))?;
                let url = url::Url::parse(endpoint).map_err(|e| fail(format!("client_discovery is not a URL: {e}")))?;
                let authority = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
                    None => url.host_str().unwrap_or("").to_string(),
                };
                // the provider answers for itself: its discovery URL stays on its own host
                if !authority.eq_ignore_ascii_case(&provider) || url.query().is_some() {
                    return Err(fail(format!("client_discovery {endpoint} is not on {provider}")));
                }
                crate::keys::remote::validate_fetch_url(endpoint).map_err(&fail)?;
                let endpoint = Arc::new(endpoint.to_string());
                self.endpoints.insert(provider.clone(), endpoint.clone()).await;
                endpoint
            }
        };
        let mut url = url::Url::parse(&endpoint).map_err(|e| fail(e.to_string()))?;
        url.query_pairs_mut().append_pair("client_id", client_id);
        let document = match self.get_json(url.as_str()).await {
            Ok(doc) => doc,
            Err(reason) if reason.starts_with("status 404") => {
                self.count("not_found");
                self.clients.insert(client_id.to_string(), None).await;
                return Ok(None);
            }
            Err(reason) => return Err(fail(reason)),
        };
        let profile = match self.profile(&document, &provider) {
            Ok(p) => Arc::new(p),
            Err(reason) => {
                self.count("invalid");
                return Err(fail(reason));
            }
        };
        self.count("ok");
        self.clients.insert(client_id.to_string(), Some(profile.clone())).await;
        Ok(Some(profile))
    }

    /// GETs `url` as JSON, at most [`MAX_BYTES`]; counts failures.
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let result = async {
            let mut response = self
                .http
                .get(url)
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| format!("{url}: {}", crate::redact::text(&e.to_string())))?;
            if !response.status().is_success() {
                return Err(format!("status {} from {url}", response.status().as_u16()));
            }
            let body = read_bounded(&mut response, MAX_BYTES).await.map_err(|e| match e {
                BodyError::TooLarge => format!("{url}: the answer is larger than {MAX_BYTES} bytes"),
                BodyError::Read(e) => format!("{url}: {e}"),
            })?;
            crate::json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
        }
        .await;
        if let Err(reason) = &result {
            if !reason.starts_with("status 404") {
                self.count("error");
            }
        }
        result
    }

    /// A client from a discovery document in the seed's format.
    fn profile(&self, doc: &Value, provider: &str) -> Result<ClientProfile, String> {
        let text = |member: &str| doc.get(member).and_then(Value::as_str).map(str::to_string);
        let redirect_uris: Vec<String> = doc
            .get("redirectUrls")
            .and_then(Value::as_array)
            .ok_or("the document has no redirectUrls")?
            .iter()
            .filter_map(Value::as_str)
            .filter(|u| crate::config::check_redirect_uri(u).is_ok())
            .map(str::to_string)
            .collect();
        if redirect_uris.is_empty() {
            return Err("the document has no usable redirectUrls".into());
        }
        let keys = match doc.get("keys") {
            None => None,
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(keys) => Some(KeySource::Inline(Arc::new(
                PublicJwkSet::from_json(&serde_json::json!({ "keys": keys })).map_err(|e| format!("keys: {e}"))?,
            ))),
        };
        let licenses = doc
            .get("licenses")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|l| l.get("name").or_else(|| l.get("licenseid")).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let puc = text("puc").filter(|u| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http")));
        Ok(ClientProfile {
            label: "client_discovery".into(),
            principal: Principal::Registered { software_id: None },
            scopes: self.config.scopes.clone(),
            public: keys.is_none(),
            keys,
            secret: None,
            introspection: false,
            redirect_uris,
            grant_types: GrantTypes {
                authorization_code: true,
                refresh_token: true,
                ..GrantTypes::default()
            },
            display: ClientDisplay {
                name: text("name").unwrap_or_else(|| "an unnamed application".into()),
                contact: text("contact"),
                puc,
                licenses,
                trust: Trust::Discovery {
                    provider: provider.to_string(),
                },
            },
        })
    }
}

/// Known clients live for the cache TTL, unknown ones for [`NEGATIVE_TTL`].
struct DiscoveryExpiry {
    ttl: Duration,
}

impl moka::Expiry<String, Option<Arc<ClientProfile>>> for DiscoveryExpiry {
    fn expire_after_create(&self, _: &String, value: &Option<Arc<ClientProfile>>, _: std::time::Instant) -> Option<Duration> {
        Some(if value.is_some() { self.ttl } else { NEGATIVE_TTL.min(self.ttl) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_at() {
        assert_eq!(split("9jd292@client.discovery.com"), Some(("9jd292", "client.discovery.com")));
        assert_eq!(split("a@b@c.example:8443"), Some(("a@b", "c.example:8443")));
        assert_eq!(split("no-provider"), None);
        assert_eq!(split("@x"), None);
        assert_eq!(split("x@"), None);
    }

    #[test]
    fn reads_the_seed_document() {
        let d = ClientDiscovery::new(
            ClientDiscoveryConfig {
                trusted_providers: vec!["client.discovery.com".into()],
                scopes: crate::scope::ScopeSet::parse("bookmarks.fields:read").unwrap(),
                cache_ttl: Duration::from_secs(60),
                max_entries: 10,
                timeout: Duration::from_secs(1),
            },
            Arc::new(Metrics::new()),
        );
        assert_eq!(d.provider_of("9jd292@client.discovery.com"), Some(("client.discovery.com", true)));
        assert_eq!(d.provider_of("9jd292@evil.example"), Some(("evil.example", false)));
        let doc = serde_json::json!({
            "clientId": "9jd292%40client.discover.com",
            "name": "Field Scout",
            "contact": "clientdiscoveryquestions@fieldscout.com",
            "redirectUrls": ["https://fieldscout.com/code_accepter"],
            "licenses": [{"licenseid": "oada-dev-1", "name": "OADA Standard Developer Agreement v1"}],
            "keys": [],
            "puc": "https://fieldscout.com/privacy_and_use_components.html"
        });
        let p = d.profile(&doc, "client.discovery.com").unwrap();
        assert_eq!(p.display.name, "Field Scout");
        assert_eq!(p.redirect_uris, vec!["https://fieldscout.com/code_accepter"]);
        assert_eq!(p.display.licenses, vec!["OADA Standard Developer Agreement v1"]);
        assert!(p.grant_types.authorization_code && p.grant_types.refresh_token);
        assert!(d.profile(&serde_json::json!({"name": "x"}), "p").is_err(), "redirectUrls are required");
    }
}
