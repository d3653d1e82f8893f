//! Rate limits and quotas on proxied requests (`rate_limits:` and `quotas:`).
//!
//! A rule counts the requests it matches (by partner, route, client address) in buckets: one
//! for all of them, one per partner, one per client address, or one per partner and address.
//! Each bucket is a GCRA cell (see the module above), so a replica enforces rate and burst
//! exactly. A quota counts a partner's requests per day, month or fixed window.
//!
//! With a shared store the counts are also shared, approximately and without ever waiting for
//! the store: every replica adds what it admitted to per-window counters in the store every
//! `store.rate_limit_sync` and reads the totals back ([`RequestLimits::sync`]). Between two syncs
//! a replica knows the others' counts as of the last sync, so the cluster may admit more than a
//! limit by what the other replicas admitted meanwhile. A rule's shared limit is its rate over a
//! sliding window of the rate's unit (`100/s`: at most about 100 in any second across
//! replicas); its burst still holds per replica. While the store is away each replica counts
//! alone.

use super::{step, Decision, Quota};
use crate::config::{PartnerMatch, QuotaPeriod, QuotaRule, RateLimitRule};
use crate::downstream::AddressKey;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::store::{CounterTotals, CounterUpdate, Store};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buckets one rule tracks at most (per-address rules); beyond that new keys get 503.
const MAX_BUCKETS: usize = 100_000;
const SHARDS: usize = 32;

/// The moment of a check: monotonic for the GCRA cells, wall-clock for the shared windows and
/// quota periods (replicas must agree on those).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: u64,
}

impl Now {
    pub fn current() -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            mono: Instant::now(),
            unix_ms,
        }
    }
}

/// Who is asking: the request's configured partner (an index into the config's `clients`) and
/// client address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller {
    pub partner: Option<u16>,
    pub address: Option<AddressKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BucketKey {
    partner: Option<u16>,
    address: Option<AddressKey>,
}

/// What a shared count knows of the other replicas.
#[derive(Debug, Clone, Copy, Default)]
struct Shared {
    /// The window (index) `current` counts.
    window: u64,
    /// Every replica's count of `window` at the last sync (ours included).
    current: u64,
    /// Every replica's count of the window before.
    previous: u64,
    /// Admitted here since the last sync.
    pending: u64,
    /// Being added to the store right now.
    in_flight: u64,
}

impl Shared {
    /// Moves to `window`, keeping what is known of the one before it.
    fn roll(&mut self, window: u64) {
        if window > self.window {
            // what was admitted here but not yet added stays pending, and is added to the new
            // window's count: near a boundary a little is counted late, never lost
            self.previous = if window == self.window + 1 { self.current } else { 0 };
            self.current = 0;
            self.window = window;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// The GCRA theoretical arrival time, in nanoseconds since the table's epoch.
    tat: u64,
    shared: Shared,
}

/// The buckets of one rule; kept across reloads that do not change the rule.
struct BucketTable {
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<BucketKey, Bucket>>]>,
}

impl BucketTable {
    fn new() -> Self {
        BucketTable {
            epoch: Instant::now(),
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &BucketKey) -> &Mutex<HashMap<BucketKey, Bucket>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

struct RuleLimiter {
    rule: RateLimitRule,
    /// `PartnerMatch::Named`, resolved.
    partner: Option<u16>,
    table: Arc<BucketTable>,
}

/// One quota count (per partner).
#[derive(Debug, Clone, Copy, Default)]
struct QuotaCount {
    /// The period `local` / `shared.current` count.
    period: u64,
    local: u64,
    shared: Shared,
}

struct QuotaCounter {
    rule: QuotaRule,
    partner: Option<u16>,
    /// Indexed by partner.
    counts: Arc<[Mutex<QuotaCount>]>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a rate limit or quota: 429.
    Limited {
        rule: String,
        /// `RateLimit-Policy` quota units and window (seconds).
        limit: u64,
        window: u64,
        retry_after: Duration,
    },
    /// The rule tracks as many buckets as it may: 503, never an unlimited pass.
    TableFull { rule: String },
}

impl Refusal {
    pub fn rule(&self) -> &str {
        match self {
            Refusal::Limited { rule, .. } | Refusal::TableFull { rule } => rule,
        }
    }

    /// The answer: 429 with `Retry-After`, `RateLimit-Policy` and `RateLimit` (IETF httpapi
    /// ratelimit-headers draft), or 503.
    pub fn reply(&self) -> Reply {
        match self {
            Refusal::Limited {
                rule,
                limit,
                window,
                retry_after,
            } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let secs = secs.max(1);
                Reply::error(429, "too_many_requests", format!("over the limit `{rule}`; retry after the time in Retry-After"))
                    .no_store()
                    .with_header("RateLimit-Policy", format!("\"{rule}\";q={limit};w={window}"))
                    .with_header("RateLimit", format!("\"{rule}\";r=0;t={secs}"))
                    .with_header("Retry-After", secs.to_string())
            }
            Refusal::TableFull { .. } => Reply::error(503, "temporarily_unavailable", "too many clients at once; retry shortly")
                .no_store()
                .with_header("Retry-After", "1"),
        }
    }
}

/// The rate limits and quotas of one config.
pub struct RequestLimits {
    /// Configured partner names, indexed like `Caller::partner`.
    partners: Vec<String>,
    partner_ids: HashMap<String, u16>,
    rules: Vec<RuleLimiter>,
    /// Route id → the rules that may apply to it.
    by_route: Vec<Vec<usize>>,
    quotas: Vec<QuotaCounter>,
    /// Counts are shared through the store.
    shared: bool,
}

fn window_ms(quota: &Quota) -> u64 {
    (quota.rate.period.as_millis() as u64).max(1)
}

impl RequestLimits {
    /// The limits of a config: `partners` are its clients' names, `route_names` its routes'
    /// names by route id. `previous` (the limits being replaced on a reload) lends the counts of
    /// rules and quotas that did not change.
    pub fn new(
        rules: &[RateLimitRule],
        quotas: &[QuotaRule],
        partners: Vec<String>,
        route_names: &[&str],
        shared: bool,
        previous: Option<&RequestLimits>,
    ) -> RequestLimits {
        let index_of = |name: &str| partners.iter().position(|p| p == name).map(|i| i as u16);
        let same_partners = previous.is_some_and(|p| p.partners == partners && p.shared == shared);
        let rules: Vec<RuleLimiter> = rules
            .iter()
            .map(|rule| {
                let kept = previous
                    .filter(|_| same_partners)
                    .and_then(|p| p.rules.iter().find(|r| r.rule == *rule))
                    .map(|r| r.table.clone());
                let partner = match &rule.partner {
                    PartnerMatch::Named(name) => index_of(name),
                    _ => None,
                };
                let table = kept.unwrap_or_else(|| {
                    let table = BucketTable::new();
                    if shared && !rule.per_client_address {
                        // the buckets are known in advance: sync them from the start, so that
                        // a replica knows the others' counts before its own first request
                        let keys: Vec<Option<u16>> = match &rule.partner {
                            PartnerMatch::Any => vec![None],
                            PartnerMatch::EachPartner => (0..partners.len() as u16).map(Some).collect(),
                            PartnerMatch::Named(_) => vec![partner],
                        };
                        for p in keys {
                            let key = BucketKey { partner: p, address: None };
                            let fresh = Bucket { tat: 0, shared: Shared::default() };
                            table.shard(&key).lock().unwrap_or_else(|e| e.into_inner()).insert(key, fresh);
                        }
                    }
                    Arc::new(table)
                });
                RuleLimiter {
                    partner,
                    rule: rule.clone(),
                    table,
                }
            })
            .collect();
        let by_route = route_names
            .iter()
            .map(|route| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.rule.route.as_deref().is_none_or(|name| name == *route))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let quotas = quotas
            .iter()
            .map(|rule| {
                let kept = previous
                    .filter(|_| same_partners)
                    .and_then(|p| p.quotas.iter().find(|q| q.rule == *rule))
                    .map(|q| q.counts.clone());
                QuotaCounter {
                    partner: match &rule.partner {
                        PartnerMatch::Named(name) => index_of(name),
                        _ => None,
                    },
                    rule: rule.clone(),
                    counts: kept.unwrap_or_else(|| (0..partners.len()).map(|_| Mutex::new(QuotaCount::default())).collect()),
                }
            })
            .collect();
        RequestLimits {
            partner_ids: partners.iter().enumerate().map(|(i, p)| (p.clone(), i as u16)).collect(),
            partners,
            rules,
            by_route,
            quotas,
            shared,
        }
    }

    /// Nothing to check at all (no rules, no quotas).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.quotas.is_empty()
    }

    /// The index of a configured partner.
    pub fn partner_index(&self, name: &str) -> Option<u16> {
        self.partner_ids.get(name).copied()
    }

    pub fn partner_name(&self, index: u16) -> Option<&str> {
        self.partners.get(usize::from(index)).map(String::as_str)
    }

    /// Checks a request to route `route` by `caller`: every matching rule in config order, then
    /// the partner's quotas. Rules before the one that refuses have counted the request (as with
    /// nginx's several `limit_req`); rules after it and the quotas have not.
    pub fn check(&self, route: usize, caller: Caller, now: Now) -> Result<(), Refusal> {
        let Some(rules) = self.by_route.get(route) else {
            return Ok(());
        };
        for &i in rules {
            let limiter = &self.rules[i];
            let partner = match &limiter.rule.partner {
                PartnerMatch::Any => None,
                PartnerMatch::EachPartner => match caller.partner {
                    Some(p) => Some(p),
                    None => continue,
                },
                PartnerMatch::Named(_) => match (caller.partner, limiter.partner) {
                    (Some(p), Some(q)) if p == q => Some(p),
                    _ => continue,
                },
            };
            let address = if limiter.rule.per_client_address {
                match caller.address {
                    Some(a) => Some(a),
                    None => continue,
                }
            } else {
                None
            };
            self.admit(limiter, BucketKey { partner, address }, now)?;
        }
        if let Some(partner) = caller.partner {
            for quota in &self.quotas {
                if quota.partner.is_some_and(|q| q != partner) {
                    continue;
                }
                self.count_quota(quota, partner, now)?;
            }
        }
        Ok(())
    }

    fn admit(&self, limiter: &RuleLimiter, key: BucketKey, now: Now) -> Result<(), Refusal> {
        let quota = &limiter.rule.quota;
        let table = &limiter.table;
        let at = table.nanos(now.mono);
        let mut shard = table.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        let per_shard = MAX_BUCKETS.div_ceil(SHARDS);
        if !shard.contains_key(&key) && shard.len() >= per_shard {
            // buckets that are full again and not waiting to be synced hold nothing worth keeping
            shard.retain(|_, b| b.tat > at || b.shared.pending + b.shared.in_flight > 0);
            if shard.len() >= per_shard {
                return Err(Refusal::TableFull {
                    rule: limiter.rule.name.clone(),
                });
            }
        }
        let bucket = shard.entry(key).or_insert(Bucket {
            tat: at,
            shared: Shared::default(),
        });
        let (decision, tat) = step(quota, bucket.tat, at);
        let limited = |retry_after| Refusal::Limited {
            rule: limiter.rule.name.clone(),
            limit: quota.rate.count,
            window: quota.rate.period.as_secs().max(1),
            retry_after,
        };
        if let Decision::Limited { retry_after } = decision {
            return Err(limited(retry_after));
        }
        if self.shared {
            let window = window_ms(quota);
            let s = &mut bucket.shared;
            s.roll(now.unix_ms / window);
            let into = (now.unix_ms % window) as f64 / window as f64;
            let mine = s.pending + s.in_flight;
            let estimate = s.previous as f64 * (1.0 - into) + (s.current + mine) as f64;
            if estimate + 1.0 > quota.rate.count as f64 {
                return Err(limited(shared_wait(s.previous, s.current + mine, quota.rate.count, into, window)));
            }
            s.pending += 1;
        }
        bucket.tat = tat;
        Ok(())
    }

    fn count_quota(&self, quota: &QuotaCounter, partner: u16, now: Now) -> Result<(), Refusal> {
        let Some(slot) = quota.counts.get(usize::from(partner)) else {
            return Ok(());
        };
        let (period, ends_at) = period_of(quota.rule.period, now.unix_ms / 1000);
        let mut count = slot.lock().unwrap_or_else(|e| e.into_inner());
        if count.period != period {
            *count = QuotaCount {
                period,
                local: 0,
                shared: Shared {
                    window: period,
                    ..Shared::default()
                },
            };
        }
        let used = if self.shared {
            count.shared.current + count.shared.pending + count.shared.in_flight
        } else {
            count.local
        };
        if used >= quota.rule.limit {
            return Err(Refusal::Limited {
                rule: quota.rule.name.clone(),
                limit: quota.rule.limit,
                window: period_seconds(quota.rule.period),
                retry_after: Duration::from_millis((ends_at * 1000).saturating_sub(now.unix_ms)),
            });
        }
        count.local += 1;
        if self.shared {
            count.shared.pending += 1;
        }
        Ok(())
    }

    /// Adds what this replica admitted since the last sync to the shared counters, and learns
    /// the other replicas' counts. Counts that could not be added are kept for the next sync.
    pub async fn sync(&self, store: &dyn Store, now: Now) {
        if !self.shared || self.is_empty() {
            return;
        }
        let mut updates = Vec::new();
        let mut targets = Vec::new();
        for (i, limiter) in self.rules.iter().enumerate() {
            let window = window_ms(&limiter.rule.quota);
            let current = now.unix_ms / window;
            for (s, shard) in limiter.table.shards.iter().enumerate() {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                for (key, bucket) in shard.iter_mut() {
                    let b = &mut bucket.shared;
                    b.roll(current);
                    b.in_flight = b.pending;
                    b.pending = 0;
                    updates.push(CounterUpdate {
                        key: self.rule_key(&limiter.rule.name, key),
                        window: b.window,
                        add: b.in_flight,
                        with_previous: true,
                        ttl: Duration::from_millis(window.saturating_mul(3)),
                    });
                    targets.push(Target::Rule { rule: i, shard: s, key: *key });
                }
            }
        }
        for (i, quota) in self.quotas.iter().enumerate() {
            let (period, ends_at) = period_of(quota.rule.period, now.unix_ms / 1000);
            for (p, slot) in quota.counts.iter().enumerate() {
                if quota.partner.is_some_and(|q| usize::from(q) != p) {
                    continue;
                }
                let mut count = slot.lock().unwrap_or_else(|e| e.into_inner());
                if count.period != period && count.shared.pending == 0 {
                    // a new period (counted late ones of the old are flushed first)
                    *count = QuotaCount {
                        period,
                        local: 0,
                        shared: Shared {
                            window: period,
                            ..Shared::default()
                        },
                    };
                }
                count.shared.in_flight = count.shared.pending;
                count.shared.pending = 0;
                updates.push(CounterUpdate {
                    key: format!("quota:{}:{}", quota.rule.name, self.partners[p]),
                    window: count.period,
                    add: count.shared.in_flight,
                    with_previous: false,
                    ttl: Duration::from_secs(ends_at.saturating_sub(now.unix_ms / 1000) + 3600),
                });
                targets.push(Target::Quota { quota: i, partner: p });
            }
        }
        if updates.is_empty() {
            return;
        }
        let totals = store.add_to_counters(&updates).await;
        for (n, target) in targets.into_iter().enumerate() {
            let totals: Option<CounterTotals> = totals.as_ref().ok().and_then(|t| t.get(n).copied());
            let update = &updates[n];
            let apply = |s: &mut Shared| {
                let sent = std::mem::take(&mut s.in_flight);
                match totals {
                    Some(t) if s.window == update.window => {
                        s.current = t.current;
                        s.previous = t.previous;
                    }
                    // the window moved on meanwhile: what was sent is in the store's count of
                    // the old one
                    Some(_) => {}
                    // not added: keep it for the next sync
                    None => s.pending += sent,
                }
            };
            match target {
                Target::Rule { rule, shard, key } => {
                    let mut shard = self.rules[rule].table.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(bucket) = shard.get_mut(&key) {
                        apply(&mut bucket.shared);
                    }
                }
                Target::Quota { quota, partner } => {
                    let mut count = self.quotas[quota].counts[partner].lock().unwrap_or_else(|e| e.into_inner());
                    apply(&mut count.shared);
                }
            }
        }
        if let Err(e) = totals {
            tracing::debug!(error = %e, "rate-limit counts not shared this time; each replica counts alone meanwhile");
        }
    }

    fn rule_key(&self, rule: &str, key: &BucketKey) -> String {
        let partner = key.partner.and_then(|p| self.partner_name(p)).unwrap_or("-");
        match key.address {
            Some(a) => format!("rl:{rule}:{partner}:{a}"),
            None => format!("rl:{rule}:{partner}"),
        }
    }

    /// Counts a refusal in `oada_gateway_rate_limited_total{partner,rule}`.
    pub fn count_refusal(&self, metrics: &Metrics, caller: &Caller, refusal: &Refusal) {
        let partner = caller.partner.and_then(|p| self.partner_name(p)).unwrap_or("-");
        metrics.rate_limited.with_label_values(&[partner, refusal.rule()]).inc();
    }
}

enum Target {
    Rule { rule: usize, shard: usize, key: BucketKey },
    Quota { quota: usize, partner: usize },
}

/// How long until a sliding-window estimate admits one more request.
fn shared_wait(previous: u64, current: u64, limit: u64, into: f64, window: u64) -> Duration {
    let limit = limit as f64;
    let (previous, current) = (previous as f64, current as f64);
    let fraction = if current + 1.0 <= limit && previous > 0.0 {
        // later in this window the previous one weighs less
        (1.0 - (limit - current - 1.0) / previous) - into
    } else {
        // into the next window, where this one is the previous
        (1.0 - into) + if current > 0.0 { (1.0 - (limit - 1.0) / current).max(0.0) } else { 0.0 }
    };
    Duration::from_millis((fraction.max(0.0) * window as f64).ceil() as u64)
}

/// The period (index) `unix` falls in, and when it ends (Unix seconds).
pub fn period_of(period: QuotaPeriod, unix: u64) -> (u64, u64) {
    match period {
        QuotaPeriod::Day => {
            let day = unix / 86_400;
            (day, (day + 1) * 86_400)
        }
        QuotaPeriod::Every(d) => {
            let len = d.as_secs().max(1);
            let n = unix / len;
            (n, (n + 1) * len)
        }
        QuotaPeriod::Month => {
            let (year, month) = year_month(unix / 86_400);
            let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            let index = u64::try_from(year * 12 + i64::from(month - 1)).unwrap_or(0);
            (index, days_from_civil(next_year, next_month) * 86_400)
        }
    }
}

fn period_seconds(period: QuotaPeriod) -> u64 {
    match period {
        QuotaPeriod::Day => 86_400,
        QuotaPeriod::Month => 30 * 86_400,
        QuotaPeriod::Every(d) => d.as_secs().max(1),
    }
}

/// The (year, month) of a day since the Unix epoch (proleptic Gregorian, Howard Hinnant's
/// civil-from-days).
fn year_month(days: u64) -> (i64, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// Days since the Unix epoch of the first day of a month.
fn days_from_civil(year: i64, month: u32) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).unwrap_or(0)
}

/// The client address a request counts under.
pub fn address_of(ip: Option<IpAddr>) -> Option<AddressKey> {
    ip.map(AddressKey::of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rate;

    fn rule(name: &str, partner: PartnerMatch, route: Option<&str>, per_address: bool, rate: &str, burst: u32) -> RateLimitRule {
        RateLimitRule {
            name: name.into(),
            partner,
            route: route.map(str::to_string),
            per_client_address: per_address,
            quota: Quota {
                rate: Rate::parse(rate).unwrap(),
                burst,
            },
        }
    }

    fn at(base: Instant, unix_ms: u64, offset_ms: u64) -> Now {
        Now {
            mono: base + Duration::from_millis(offset_ms),
            unix_ms: unix_ms + offset_ms,
        }
    }

    fn partners() -> Vec<String> {
        vec!["mm".into(), "other".into()]
    }

    #[test]
    fn a_partner_over_its_rate_is_refused_while_another_is_not() {
        let limits = RequestLimits::new(
            &[rule("each", PartnerMatch::EachPartner, None, false, "10/s", 2)],
            &[],
            partners(),
            &["/observations"],
            false,
            None,
        );
        let base = Instant::now();
        let mm = Caller { partner: Some(0), address: None };
        let other = Caller { partner: Some(1), address: None };
        assert!(limits.check(0, mm, at(base, 0, 0)).is_ok());
        assert!(limits.check(0, mm, at(base, 0, 0)).is_ok());
        match limits.check(0, mm, at(base, 0, 0)) {
            Err(Refusal::Limited { rule, retry_after, limit, window }) => {
                assert_eq!((rule.as_str(), limit, window), ("each", 10, 1));
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        assert!(limits.check(0, other, at(base, 0, 0)).is_ok(), "another partner has its own bucket");
        assert!(limits.check(0, Caller::default(), at(base, 0, 0)).is_ok(), "no partner: the rule does not apply");
        assert!(limits.check(0, mm, at(base, 0, 100)).is_ok(), "one interval later");
    }

    #[test]
    fn rules_by_route_name_and_address() {
        let limits = RequestLimits::new(
            &[
                rule("obs", PartnerMatch::Named("mm".into()), Some("/observations"), false, "1/m", 1),
                rule("addr", PartnerMatch::Any, None, true, "1/m", 1),
            ],
            &[],
            partners(),
            &["/observations", "/stations"],
            false,
            None,
        );
        let base = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mm_a = Caller { partner: Some(0), address: address_of(Some(a)) };
        assert!(limits.check(1, mm_a, at(base, 0, 0)).is_ok());
        assert_eq!(limits.check(1, mm_a, at(base, 0, 0)).unwrap_err().rule(), "addr");
        let mm_b = Caller { partner: Some(0), address: address_of(Some(b)) };
        assert!(limits.check(0, mm_b, at(base, 0, 0)).is_ok());
        assert_eq!(limits.check(0, Caller { partner: Some(0), address: address_of(Some("10.0.0.3".parse().unwrap())) }, at(base, 0, 0)).unwrap_err().rule(), "obs");
    }

    #[test]
    fn quotas_reset_at_the_period_boundary() {
        let quota = QuotaRule {
            name: "mm-2s".into(),
            partner: PartnerMatch::Named("mm".into()),
            limit: 3,
            period: QuotaPeriod::Every(Duration::from_secs(2)),
        };
        let limits = RequestLimits::new(&[], &[quota], partners(), &["/"], false, None);
        let base = Instant::now();
        let mm = Caller { partner: Some(0), address: None };
        let t0 = 1_000_000_000; // a period boundary (ms)
        for _ in 0..3 {
            assert!(limits.check(0, mm, at(base, t0, 500)).is_ok());
        }
        match limits.check(0, mm, at(base, t0, 500)) {
            Err(Refusal::Limited { retry_after, window, .. }) => {
                assert_eq!(retry_after, Duration::from_millis(1500), "until the period ends");
                assert_eq!(window, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(limits.check(0, Caller { partner: Some(1), address: None }, at(base, t0, 500)).is_ok(), "another partner");
        assert!(limits.check(0, mm, at(base, t0, 2000)).is_ok(), "a new period");
    }

    #[test]
    fn month_periods_follow_the_calendar() {
        // 2026-11-24T00:00:00Z = 1795478400
        let (n, end) = period_of(QuotaPeriod::Month, 1_795_478_400);
        assert_eq!(end, 1_796_083_200, "2026-12-01T00:00:00Z");
        let (next, end2) = period_of(QuotaPeriod::Month, end);
        assert_eq!(next, n + 1);
        assert_eq!(end2, 1_798_761_600, "2027-01-01T00:00:00Z");
        assert_eq!(period_of(QuotaPeriod::Month, end - 1).0, n);
        let (_, feb_end) = period_of(QuotaPeriod::Month, 1_833_235_200); // 2028-02-05, a leap year
        assert_eq!(feb_end, 1_835_481_600, "2028-03-01T00:00:00Z");
    }

    #[test]
    fn a_reload_keeps_the_counts_of_unchanged_rules() {
        let rules = [rule("each", PartnerMatch::EachPartner, None, false, "1/m", 1)];
        let first = RequestLimits::new(&rules, &[], partners(), &["/"], false, None);
        let base = Instant::now();
        let mm = Caller { partner: Some(0), address: None };
        assert!(first.check(0, mm, at(base, 0, 0)).is_ok());
        let second = RequestLimits::new(&rules, &[], partners(), &["/", "/new"], false, Some(&first));
        assert!(second.check(0, mm, at(base, 0, 0)).is_err(), "the bucket was kept");
        let changed = [rule("each", PartnerMatch::EachPartner, None, false, "2/m", 2)];
        let third = RequestLimits::new(&changed, &[], partners(), &["/"], false, Some(&second));
        assert!(third.check(0, mm, at(base, 0, 0)).is_ok(), "a changed rule starts afresh");
    }

    #[test]
    fn shared_estimates_weigh_the_previous_window() {
        // full now: half a window to go, then a tenth of the next (10 x 0.9 + 1 = 10)
        assert_eq!(shared_wait(0, 10, 10, 0.5, 1000), Duration::from_millis(600));
        // previous 10, current 0, limit 10, halfway: estimate 5 → admitted, no wait needed
        assert_eq!(shared_wait(10, 0, 10, 0.5, 1000), Duration::ZERO);
        let mut s = Shared { window: 5, current: 7, previous: 1, pending: 2, in_flight: 0 };
        s.roll(6);
        assert_eq!((s.window, s.current, s.previous, s.pending), (6, 0, 7, 2));
        s.roll(9);
        assert_eq!(s.previous, 0, "a gap of windows forgets");
    }

    #[tokio::test]
    async fn replicas_share_limits_and_quotas_through_the_store() {
        let store = crate::store::memory::MemoryStore::new(10, 1000);
        let rules = [rule("each", PartnerMatch::EachPartner, None, false, "10/m", 10)];
        let quota = QuotaRule {
            name: "mm-hour".into(),
            partner: PartnerMatch::Named("mm".into()),
            limit: 12,
            period: QuotaPeriod::Every(Duration::from_secs(3600)),
        };
        let a = RequestLimits::new(&rules, std::slice::from_ref(&quota), partners(), &["/"], true, None);
        let b = RequestLimits::new(&rules, &[quota], partners(), &["/"], true, None);
        let base = Instant::now();
        let t0 = 3_600_000 * 500; // the start of an hour (and of a minute)
        let mm = Caller { partner: Some(0), address: None };
        for _ in 0..6 {
            assert!(a.check(0, mm, at(base, t0, 0)).is_ok());
        }
        a.sync(&store, at(base, t0, 0)).await;
        b.sync(&store, at(base, t0, 0)).await;
        // b knows of a's 6: 4 more fit in the shared 10/m
        for _ in 0..4 {
            assert!(b.check(0, mm, at(base, t0, 0)).is_ok());
        }
        assert_eq!(b.check(0, mm, at(base, t0, 0)).unwrap_err().rule(), "each");
        b.sync(&store, at(base, t0, 0)).await;
        a.sync(&store, at(base, t0, 0)).await;
        assert_eq!(a.check(0, mm, at(base, t0, 0)).unwrap_err().rule(), "each", "a learnt of b's 4");

        // a minute later the rate has room again, but the quota (12 per hour) has 2 left
        let later = at(base, t0, 60_000 * 3);
        a.sync(&store, later).await;
        b.sync(&store, later).await;
        assert!(a.check(0, mm, later).is_ok());
        assert!(b.check(0, mm, later).is_ok());
        b.sync(&store, later).await;
        a.sync(&store, later).await;
        match a.check(0, mm, later) {
            Err(Refusal::Limited { rule, .. }) => assert_eq!(rule, "mm-hour"),
            other => panic!("{other:?}"),
        }
    }
}
