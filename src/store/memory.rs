//! The in-memory store: bounded tables in this process.

use super::{Registration, Store, StoreError};
use crate::ids::unix_now;
use async_trait::async_trait;
use moka::sync::Cache;
use moka::Expiry;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A set of keys that each expire at a Unix time. Full means full: an entry is never dropped
/// before it expires, because forgetting a used `jti` or a revocation would re-open a hole.
pub struct ExpiringSet {
    name: &'static str,
    capacity: usize,
    inner: Mutex<ExpiringSetInner>,
}

#[derive(Default)]
struct ExpiringSetInner {
    live: HashMap<Arc<str>, u64>,
    by_expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl ExpiringSetInner {
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((exp, _))) = self.by_expiry.peek() {
            if *exp > now {
                break;
            }
            let Reverse((exp, key)) = self.by_expiry.pop().expect("peeked");
            // the key may have been re-inserted with a later expiry; only drop the entry it had then
            if self.live.get(&key) == Some(&exp) {
                self.live.remove(&key);
            }
        }
    }
}

impl ExpiringSet {
    pub fn new(name: &'static str, capacity: usize) -> Self {
        ExpiringSet {
            name,
            capacity,
            inner: Mutex::new(ExpiringSetInner::default()),
        }
    }

    /// Adds `key` unless it is already live. `Ok(false)`: it was.
    pub fn insert_new(&self, key: &str, expires_at: u64, now: u64) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.purge(now);
        if inner.live.contains_key(key) {
            return Ok(false);
        }
        if inner.live.len() >= self.capacity {
            return Err(StoreError::Full(self.name));
        }
        let key: Arc<str> = key.into();
        inner.live.insert(key.clone(), expires_at);
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(true)
    }

    /// Adds or extends `key`.
    pub fn insert(&self, key: &str, expires_at: u64, now: u64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.purge(now);
        match inner.live.get(key).copied() {
            Some(old) if old >= expires_at => return Ok(()),
            Some(_) => {}
            None if inner.live.len() >= self.capacity => return Err(StoreError::Full(self.name)),
            None => {}
        }
        let key: Arc<str> = key.into();
        inner.live.insert(key.clone(), expires_at);
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }

    pub fn contains(&self, key: &str, now: u64) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.live.get(key).is_some_and(|exp| *exp > now)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registrations expire at their own `expires_at`.
struct RegistrationExpiry;

impl Expiry<String, Arc<Registration>> for RegistrationExpiry {
    fn expire_after_create(&self, _key: &String, value: &Arc<Registration>, _created_at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(value.expires_at.saturating_sub(unix_now())))
    }
}

pub struct MemoryStore {
    registrations: Cache<String, Arc<Registration>>,
    assertions: ExpiringSet,
    revocations: ExpiringSet,
}

impl MemoryStore {
    pub fn new(max_registrations: u64, max_assertions: u64) -> Self {
        MemoryStore {
            registrations: Cache::builder()
                .max_capacity(max_registrations)
                .expire_after(RegistrationExpiry)
                .build(),
            assertions: ExpiringSet::new("assertion replay", max_assertions as usize),
            // Revocations are authenticated and bounded by the number of live tokens.
            revocations: ExpiringSet::new("revocation", 10_000_000),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        self.registrations
            .insert(registration.client_id.clone(), Arc::new(registration.clone()));
        Ok(())
    }

    async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        Ok(self
            .registrations
            .get(client_id)
            .filter(|r| r.expires_at > unix_now())
            .map(|r| (*r).clone()))
    }

    async fn remember_assertion(&self, id: &str, expires_at: u64) -> Result<bool, StoreError> {
        self.assertions.insert_new(id, expires_at, unix_now())
    }

    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        self.revocations.insert(jti, expires_at, unix_now())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.revocations.contains(jti, unix_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_detected_until_expiry() {
        let set = ExpiringSet::new("t", 10);
        assert_eq!(set.insert_new("a", 100, 50), Ok(true));
        assert_eq!(set.insert_new("a", 100, 60), Ok(false));
        // after expiry the entry is gone and the id may be used again
        assert_eq!(set.insert_new("a", 200, 100), Ok(true));
    }

    #[test]
    fn full_set_refuses_instead_of_forgetting() {
        let set = ExpiringSet::new("t", 2);
        assert_eq!(set.insert_new("a", 100, 0), Ok(true));
        assert_eq!(set.insert_new("b", 100, 0), Ok(true));
        assert_eq!(set.insert_new("c", 100, 0), Err(StoreError::Full("t")));
        assert_eq!(set.insert_new("a", 100, 0), Ok(false), "a is still remembered");
        // expired entries make room
        assert_eq!(set.insert_new("c", 300, 150), Ok(true));
    }

    #[test]
    fn reinsert_with_later_expiry_survives_old_heap_entry() {
        let set = ExpiringSet::new("t", 10);
        set.insert("j", 100, 0).unwrap();
        set.insert("j", 300, 50).unwrap();
        assert!(set.contains("j", 150), "the later expiry wins");
        assert!(!set.contains("j", 300));
    }

    #[tokio::test]
    async fn registrations_round_trip() {
        let store = MemoryStore::new(10, 1000);
        let reg = Registration {
            client_id: "c1".into(),
            issued_at: unix_now(),
            expires_at: unix_now() + 60,
            binding: super::super::ClientBinding::Configured { name: "mm".into() },
            scope: "a:read".into(),
            metadata: serde_json::json!({"client_name": "x"}),
        };
        store.put_registration(&reg).await.unwrap();
        assert_eq!(store.registration("c1").await.unwrap(), Some(reg));
        assert_eq!(store.registration("c2").await.unwrap(), None);
    }
}
