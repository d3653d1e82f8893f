//! `rate_limits:` and `quotas:`: limits on proxied requests by partner, route and client address.

use super::Builder;
use crate::config::raw::{RawQuota, RawRequestRateLimit};
use crate::config::{ConfiguredClient, PartnerMatch, QuotaPeriod, QuotaRule, RateLimitRule};
use crate::ratelimit::{Quota, Rate};
use crate::routes::RouteTable;
use std::collections::HashSet;
use std::time::Duration;

impl Builder {
    pub(super) fn rate_limits(&mut self, raw: &[RawRequestRateLimit], clients: &[ConfiguredClient], routes: &RouteTable) -> Vec<RateLimitRule> {
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("rate_limits[{i}]");
            if !valid_name(&r.name) {
                self.diag.error(format!("{key}.name"), "must be 1 to 64 letters, digits, `-`, `_` or `.`");
            } else if !names.insert(r.name.clone()) {
                self.diag.error(format!("{key}.name"), format!("`{}` names another rate limit too", r.name));
            }
            let partner = self.partner_match(&format!("{key}.partner"), r.partner.as_deref(), clients);
            if let Some(route) = &r.route {
                if !routes.routes().iter().any(|rt| rt.name == *route) {
                    let known: Vec<&str> = routes.routes().iter().map(|rt| rt.name.as_str()).collect();
                    self.diag.error(format!("{key}.route"), format!("no route is named `{route}`; routes: {}", known.join(", ")));
                }
            }
            let quota = match Rate::parse(&r.rate) {
                Ok(rate) => {
                    if r.burst == Some(0) {
                        self.diag.error(format!("{key}.burst"), "must be at least 1");
                    }
                    let burst = r.burst.unwrap_or_else(|| u32::try_from(rate.count).unwrap_or(u32::MAX)).max(1);
                    Quota { rate, burst }
                }
                Err(e) => {
                    self.diag.error(format!("{key}.rate"), e);
                    continue;
                }
            };
            rules.push(RateLimitRule {
                name: r.name.clone(),
                partner,
                route: r.route.clone(),
                per_client_address: r.per_client_address,
                quota,
            });
        }
        rules
    }

    pub(super) fn quotas(&mut self, raw: &[RawQuota], clients: &[ConfiguredClient]) -> Vec<QuotaRule> {
        let mut names = HashSet::new();
        let mut quotas = Vec::new();
        for (i, q) in raw.iter().enumerate() {
            let key = format!("quotas[{i}]");
            let partner = self.partner_match(&format!("{key}.partner"), Some(&q.partner), clients);
            if q.limit == 0 {
                self.diag.error(format!("{key}.limit"), "must be at least 1");
            }
            let period = match q.per.trim() {
                "day" => QuotaPeriod::Day,
                "month" => QuotaPeriod::Month,
                other => match crate::config::duration::parse_duration(other) {
                    Ok(d) if d >= Duration::from_secs(1) && d.subsec_nanos() == 0 => QuotaPeriod::Every(d),
                    _ => {
                        self.diag.error(format!("{key}.per"), format!("`{other}` is not a period; expected day, month or whole seconds such as 1h"));
                        continue;
                    }
                },
            };
            let name = q.name.clone().unwrap_or_else(|| format!("{}-{}", q.partner.replace('*', "each"), q.per.trim()));
            if !valid_name(&name) {
                self.diag.error(format!("{key}.name"), "must be 1 to 64 letters, digits, `-`, `_` or `.`");
            } else if !names.insert(name.clone()) {
                self.diag.error(format!("{key}.name"), format!("`{name}` names another quota too; give each a name"));
            }
            quotas.push(QuotaRule {
                name,
                partner,
                limit: q.limit,
                period,
            });
        }
        quotas
    }

    fn partner_match(&mut self, key: &str, partner: Option<&str>, clients: &[ConfiguredClient]) -> PartnerMatch {
        match partner {
            None => PartnerMatch::Any,
            Some("*") => PartnerMatch::EachPartner,
            Some(name) => {
                if !clients.iter().any(|c| c.name == name) {
                    let known: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
                    self.diag.error(key, format!("no partner is named `{name}` (clients[].name: {}); or `*` for each partner", known.join(", ")));
                }
                PartnerMatch::Named(name.to_string())
            }
        }
    }
}

/// Names appear in metric labels and response headers.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
