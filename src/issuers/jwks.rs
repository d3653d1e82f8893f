//! An external issuer's key set: fetched at start-up, refreshed in the background within the
//! bounds of the issuer's `Cache-Control`, fetched again at once (one fetch at a time, at most
//! one per cooldown) when a token names a `kid` it lacks, and kept while fetches fail for at most
//! `max_stale`.

use crate::config::JwksCacheConfig;
use crate::keys::PublicJwk;
use arc_swap::ArcSwapOption;
use jsonwebtoken::DecodingKey;
use moka::sync::Cache;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many keys per set: a key set is a handful of keys, not a table.
pub const MAX_KEYS: usize = 100;

/// One usable key.
pub struct LoadedKey {
    pub jwk: PublicJwk,
    pub decoding: DecodingKey,
}

/// The keys of one successful fetch.
pub struct LoadedKeys {
    pub keys: Vec<LoadedKey>,
    /// When they were fetched (or read from a file: never stale).
    pub fetched_at: Option<Instant>,
}

impl LoadedKeys {
    pub fn new(jwks: &[PublicJwk], fetched_at: Option<Instant>) -> LoadedKeys {
        LoadedKeys {
            keys: jwks
                .iter()
                .map(|jwk| LoadedKey {
                    decoding: jwk.decoding_key(),
                    jwk: jwk.clone(),
                })
                .collect(),
            fetched_at,
        }
    }

    /// The key a token names by `kid`, or the only key when it names none.
    pub fn find(&self, kid: Option<&str>) -> Option<&LoadedKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.jwk.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// Where the fetch schedule stands.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// When the background refresh should fetch next.
    next_refresh: Instant,
    /// The last fetch made for an unknown `kid`.
    last_forced: Option<Instant>,
}

pub struct KeySet {
    pub settings: JwksCacheConfig,
    current: ArcSwapOption<LoadedKeys>,
    schedule: Mutex<Schedule>,
    /// One fetch at a time: requests naming an unknown `kid` wait for the fetch under way.
    fetching: tokio::sync::Mutex<()>,
    /// `kid`s still unknown after a fetch, for one cooldown.
    unknown_kids: Cache<String, ()>,
}

impl KeySet {
    pub fn new(settings: JwksCacheConfig) -> KeySet {
        KeySet {
            unknown_kids: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.unknown_kid_cooldown)
                .build(),
            settings,
            current: ArcSwapOption::empty(),
            schedule: Mutex::new(Schedule {
                next_refresh: Instant::now(),
                last_forced: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys in use, if they are not older than `max_stale`.
    pub fn usable(&self) -> Option<std::sync::Arc<LoadedKeys>> {
        let keys = self.current.load_full()?;
        match keys.fetched_at {
            Some(at) if at.elapsed() > self.settings.max_stale => None,
            _ => Some(keys),
        }
    }

    /// Seconds since the keys in use were fetched (`None`: none yet, or read from a file).
    pub fn age(&self) -> Option<Duration> {
        self.current.load().as_ref().and_then(|k| k.fetched_at).map(|at| at.elapsed())
    }

    pub fn key_count(&self) -> usize {
        self.current.load().as_ref().map_or(0, |k| k.keys.len())
    }

    pub fn install(&self, keys: LoadedKeys, max_age: Option<Duration>) {
        self.current.store(Some(std::sync::Arc::new(keys)));
        self.unknown_kids.invalidate_all();
        let wait = max_age
            .unwrap_or(Duration::from_secs(300))
            .clamp(self.settings.min_refresh, self.settings.max_refresh);
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).next_refresh = Instant::now() + wait;
    }

    /// After a failed fetch: try again soon, but not in a loop.
    pub fn retry_later(&self) {
        let wait = self.settings.min_refresh.min(Duration::from_secs(10));
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).next_refresh = Instant::now() + wait;
    }

    pub fn refresh_due(&self) -> bool {
        Instant::now() >= self.schedule.lock().unwrap_or_else(|e| e.into_inner()).next_refresh
    }

    /// Was `kid` still unknown after a fetch within the cooldown? Then a token naming it is
    /// refused without waiting for anything.
    pub fn known_unknown(&self, kid: Option<&str>) -> bool {
        kid.is_some_and(|k| self.unknown_kids.contains_key(k))
    }

    /// Fetches with `fetch`, one fetch at a time: a caller that finds one under way waits for it
    /// and uses its result. `forced_for` (a fetch for a token's unknown `kid`) fetches at most
    /// once per `unknown_kid_cooldown`, and remembers a `kid` the fetch did not bring. Returns
    /// whether this call fetched.
    pub async fn fetch_once<F, Fut>(&self, forced_for: Option<Option<&str>>, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let started = Instant::now();
        let _one_at_a_time = self.fetching.lock().await;
        if forced_for.is_some() {
            let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
            // another request's fetch finished while this one waited: use its result
            if schedule.last_forced.is_some_and(|at| at >= started) {
                return false;
            }
            if schedule
                .last_forced
                .is_some_and(|at| at.elapsed() < self.settings.unknown_kid_cooldown)
            {
                return false;
            }
            schedule.last_forced = Some(Instant::now());
        }
        fetch().await;
        if let Some(Some(kid)) = forced_for {
            let known = self.current.load().as_ref().is_some_and(|k| k.find(Some(kid)).is_some());
            if !known {
                self.unknown_kids.insert(kid.to_string(), ());
            }
        }
        true
    }
}

/// `max-age` of a `Cache-Control` header value.
pub fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    cache_control?
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age(Some("public, max-age=600")), Some(Duration::from_secs(600)));
        assert_eq!(max_age(Some("no-cache")), None);
        assert_eq!(max_age(None), None);
        assert_eq!(max_age(Some("max-age=abc")), None);
    }

    fn settings(cooldown_ms: u64) -> JwksCacheConfig {
        JwksCacheConfig {
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_millis(cooldown_ms),
            max_stale: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn unknown_kids_fetch_at_most_once_per_cooldown() {
        let set = KeySet::new(settings(60_000));
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        for kid in ["a", "b", "c"] {
            if !set.known_unknown(Some(kid)) {
                set.fetch_once(Some(Some(kid)), || async {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .await;
            }
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(set.known_unknown(Some("a")), "a kid still unknown after a fetch is remembered");
        assert!(!set.known_unknown(Some("b")), "b was not asked for by the one fetch");
    }

    #[test]
    fn refresh_interval_follows_max_age_within_bounds() {
        let set = KeySet::new(settings(1000));
        set.install(LoadedKeys { keys: vec![], fetched_at: Some(Instant::now()) }, Some(Duration::from_secs(5)));
        let next = set.schedule.lock().unwrap().next_refresh;
        assert!(next >= Instant::now() + Duration::from_secs(59), "min_refresh bounds a short max-age");
        set.install(LoadedKeys { keys: vec![], fetched_at: Some(Instant::now()) }, Some(Duration::from_secs(86_400)));
        let next = set.schedule.lock().unwrap().next_refresh;
        assert!(next <= Instant::now() + Duration::from_secs(3600), "max_refresh bounds a long max-age");
    }
}
