//! Rate limiting with GCRA (the generic cell rate algorithm): one timestamp per key, so a check
//! is a hash lookup and a few integer operations under a short lock.
//!
//! A key's state is its *theoretical arrival time* (TAT): the moment its bucket would be full
//! again. A request is allowed while `TAT - now` stays within the burst; each allowed request
//! moves the TAT one emission interval (`period / count`) forward. A key whose TAT has passed is
//! indistinguishable from a key never seen, which is what lets a full table make room.
//!
//! Tables are bounded. When every slot of a shard holds a key that is still being limited, a new
//! key is refused ([`LimitError::TableFull`]) rather than let through or allowed to evict a key
//! that is being limited: dropping state would reset an attacker's bucket.

pub mod requests;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `count` events per `period`, e.g. 100 per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

impl Rate {
    /// Parses `100/s`, `5000/m`, `10/h`, `1000/d`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        const EXPECTED: &str = "expected COUNT/UNIT such as 100/s, 5000/m, 10/h or 1000/d";
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate; {EXPECTED}"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a rate; {EXPECTED}"))?;
        if count == 0 {
            return Err(format!("`{text}`: the count must be at least 1"));
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => return Err(format!("unknown rate unit `{other}` in `{text}`; {EXPECTED}")),
        };
        Ok(Rate { count, period })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            86_400 => "d",
            _ => return write!(f, "{}/{:?}", self.count, self.period),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A rate and how many requests may arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub rate: Rate,
    /// Requests allowed back to back from a full bucket (at least 1).
    pub burst: u32,
}

impl Quota {
    /// Nanoseconds between two requests at the sustained rate.
    fn interval(&self) -> u64 {
        (self.rate.period.as_nanos() / u128::from(self.rate.count.max(1))).max(1) as u64
    }

    /// How far the TAT may run ahead of now and still admit a request.
    fn tolerance(&self) -> u64 {
        self.interval().saturating_mul(u64::from(self.burst.max(1) - 1))
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Requests still allowed right now.
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    Limited {
        /// Until one request will be allowed again.
        retry_after: Duration,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Seconds for a header: rounded up, at least 1 while anything is left to wait.
fn header_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft) for a decision of a
/// limit named `policy`, and `Retry-After` when limited.
pub fn response_headers(policy: &str, quota: &Quota, decision: &Decision) -> Vec<(&'static str, String)> {
    let mut headers = vec![(
        "RateLimit-Policy",
        format!("\"{policy}\";q={};w={}", quota.rate.count, quota.rate.period.as_secs().max(1)),
    )];
    match decision {
        Decision::Allowed { remaining, reset } => {
            headers.push(("RateLimit", format!("\"{policy}\";r={remaining};t={}", header_seconds(*reset))));
        }
        Decision::Limited { retry_after } => {
            let secs = header_seconds(*retry_after).max(1);
            headers.push(("RateLimit", format!("\"{policy}\";r=0;t={secs}")));
            headers.push(("Retry-After", secs.to_string()));
        }
    }
    headers
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Every slot holds a key that is still limited; the new key is refused, not admitted.
    #[error("too many clients are being rate limited at once")]
    TableFull,
}

/// One GCRA step on a key's TAT (nanoseconds since the limiter's epoch); returns the decision and
/// the new TAT.
fn step(quota: &Quota, tat: u64, now: u64) -> (Decision, u64) {
    let interval = quota.interval();
    let tolerance = quota.tolerance();
    let tat = tat.max(now);
    if tat - now > tolerance {
        let wait = tat - now - tolerance;
        return (
            Decision::Limited {
                retry_after: Duration::from_nanos(wait),
            },
            tat,
        );
    }
    let new_tat = tat + interval;
    let ahead = new_tat - now;
    let capacity = interval.saturating_mul(u64::from(quota.burst.max(1)));
    let remaining = (capacity.saturating_sub(ahead) / interval) as u32;
    (
        Decision::Allowed {
            remaining,
            reset: Duration::from_nanos(ahead),
        },
        new_tat,
    )
}

const SHARDS: usize = 32;

/// Rate limits per key (a client address, a partner), each key with the same quota.
pub struct KeyedLimiter<K> {
    quota: Quota,
    epoch: Instant,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<K, u64>>]>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter tracking at most about `max_keys` keys at once.
    pub fn new(quota: Quota, max_keys: usize) -> Self {
        KeyedLimiter {
            quota,
            epoch: Instant::now(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks one request of `key` at `at` and counts it when allowed.
    pub fn check_at(&self, key: &K, at: Instant) -> Result<Decision, LimitError> {
        let now = self.nanos(at);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = table.get_mut(key) {
            let (decision, new_tat) = step(&self.quota, *tat, now);
            *tat = new_tat;
            return Ok(decision);
        }
        if table.len() >= self.per_shard {
            // Keys whose bucket is full again carry no state worth keeping.
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.per_shard {
                return Err(LimitError::TableFull);
            }
        }
        let (decision, new_tat) = step(&self.quota, now, now);
        table.insert(key.clone(), new_tat);
        Ok(decision)
    }

    pub fn check(&self, key: &K) -> Result<Decision, LimitError> {
        self.check_at(key, Instant::now())
    }

    /// Keys currently tracked (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(text: &str, burst: u32) -> Quota {
        Quota {
            rate: Rate::parse(text).unwrap(),
            burst,
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("100/s").unwrap(), Rate { count: 100, period: Duration::from_secs(1) });
        assert_eq!(Rate::parse(" 5000 / m ").unwrap().period, Duration::from_secs(60));
        assert_eq!(Rate::parse("1/d").unwrap().to_string(), "1/d");
        for bad in ["", "10", "0/s", "x/s", "10/fortnight", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_then_sustained_rate() {
        let limiter = KeyedLimiter::new(quota("10/s", 3), 100);
        let t0 = Instant::now();
        for expected_remaining in [2, 1, 0] {
            match limiter.check_at(&"a", t0).unwrap() {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, expected_remaining),
                other => panic!("{other:?}"),
            }
        }
        match limiter.check_at(&"a", t0).unwrap() {
            Decision::Limited { retry_after } => assert_eq!(retry_after, Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
        // another key is unaffected
        assert!(limiter.check_at(&"b", t0).unwrap().is_allowed());
        // one interval later exactly one more request fits
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check_at(&"a", t1).unwrap().is_allowed());
        assert!(!limiter.check_at(&"a", t1).unwrap().is_allowed());
        // a full refill after burst intervals
        let t2 = t1 + Duration::from_millis(300);
        for _ in 0..3 {
            assert!(limiter.check_at(&"a", t2).unwrap().is_allowed());
        }
    }

    #[test]
    fn full_table_refuses_new_keys_until_buckets_refill() {
        let limiter = KeyedLimiter::new(quota("1/s", 1), SHARDS);
        let t0 = Instant::now();
        let mut refused = 0;
        for i in 0..(SHARDS * 4) {
            if limiter.check_at(&i, t0) == Err(LimitError::TableFull) {
                refused += 1;
            }
        }
        assert!(refused > 0, "a full table must refuse, not grow");
        assert!(limiter.len() <= SHARDS);
        // once the buckets are full again, their keys make room
        let later = t0 + Duration::from_secs(2);
        for i in 0..(SHARDS * 4) {
            assert!(limiter.check_at(&(1000 + i), later + Duration::from_secs(i as u64 * 2)).is_ok());
        }
    }
}
