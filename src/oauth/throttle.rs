//! Per-client-address rate limits on the hosted endpoints (`limits:` in `gateway.yaml`), so that
//! no single address can flood registration or the token endpoint (which verify signatures and
//! hash secrets). Over the limit: 429 with `Retry-After` and the rate-limit headers; more
//! addresses than the table tracks: 503, never an unlimited pass.

use super::Endpoint;
use crate::config::EndpointLimits;
use crate::downstream::AddressKey;
use crate::metrics::Metrics;
use crate::ratelimit::{response_headers, Decision, KeyedLimiter, LimitError};
use crate::reply::Reply;
use std::net::IpAddr;
use std::sync::Arc;

pub struct EndpointThrottle {
    limits: EndpointLimits,
    register: Option<KeyedLimiter<AddressKey>>,
    token: Option<KeyedLimiter<AddressKey>>,
    login: Option<KeyedLimiter<AddressKey>>,
    metrics: Arc<Metrics>,
}

impl EndpointThrottle {
    pub fn new(limits: &EndpointLimits, metrics: Arc<Metrics>) -> Self {
        let limiter = |q: &Option<crate::ratelimit::Quota>| q.map(|q| KeyedLimiter::new(q, limits.max_tracked_addresses));
        EndpointThrottle {
            limits: limits.clone(),
            register: limiter(&limits.register),
            token: limiter(&limits.token),
            login: limiter(&limits.login),
            metrics,
        }
    }

    /// Made for these limits (a reload that keeps them keeps the counts too)?
    pub fn enforces(&self, limits: &EndpointLimits) -> bool {
        self.limits == *limits
    }

    /// `Some(reply)` when a request from `client` to `endpoint` must be refused.
    pub fn check(&self, endpoint: Endpoint, method: &http::Method, client: Option<IpAddr>) -> Option<Reply> {
        let (limiter, rule) = match endpoint {
            Endpoint::Register => (self.register.as_ref()?, "register"),
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => (self.token.as_ref()?, "token"),
            Endpoint::Login if *method == http::Method::POST => (self.login.as_ref()?, "login"),
            _ => return None,
        };
        let key = AddressKey::of(client?);
        match limiter.check(&key) {
            Ok(Decision::Allowed { .. }) => None,
            Ok(decision @ Decision::Limited { .. }) => {
                self.metrics.rate_limited.with_label_values(&["-", rule]).inc();
                let mut reply = Reply::error(
                    429,
                    "too_many_requests",
                    format!("too many {rule} requests from this address; retry after the time in Retry-After"),
                )
                .no_store();
                for (name, value) in response_headers(rule, limiter.quota(), &decision) {
                    reply = reply.with_header(name, value);
                }
                Some(reply)
            }
            Err(LimitError::TableFull) => {
                self.metrics.rate_limited.with_label_values(&["-", rule]).inc();
                Some(
                    Reply::error(503, "temporarily_unavailable", "too many clients at once; retry shortly")
                        .no_store()
                        .with_header("Retry-After", "1"),
                )
            }
        }
    }
}
