//! The in-memory store: bounded tables in this process.

use super::{Registration, Store, StoreError};
use crate::ids::unix_now;
use async_trait::async_trait;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

/// Keys with values that each expire at a Unix time. Full means full: an entry is never dropped
/// before it expires (forgetting a used `jti` or a revocation would re-open a hole, dropping a
/// registration would break a client that was told it is registered); a full table refuses new
/// keys with [`StoreError::Full`].
pub struct ExpiringMap<V> {
    name: &'static str,
    capacity: usize,
    inner: Mutex<ExpiringInner<V>>,
}

struct ExpiringInner<V> {
    live: HashMap<Arc<str>, (u64, V)>,
    by_expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl<V> ExpiringInner<V> {
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((exp, _))) = self.by_expiry.peek() {
            if *exp > now {
                break;
            }
            let Reverse((exp, key)) = self.by_expiry.pop().expect("peeked");
            // the key may have been re-inserted with a later expiry; only drop the entry it had then
            if self.live.get(&key).is_some_and(|(e, _)| *e == exp) {
                self.live.remove(&key);
            }
        }
    }
}

impl<V: Clone> ExpiringMap<V> {
    pub fn new(name: &'static str, capacity: usize) -> Self {
        ExpiringMap {
            name,
            capacity,
            inner: Mutex::new(ExpiringInner {
                live: HashMap::new(),
                by_expiry: BinaryHeap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ExpiringInner<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `key` unless it is already live. `Ok(false)`: it was.
    pub fn insert_new(&self, key: &str, value: V, expires_at: u64, now: u64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.purge(now);
        if inner.live.contains_key(key) {
            return Ok(false);
        }
        if inner.live.len() >= self.capacity {
            return Err(StoreError::Full(self.name));
        }
        let key: Arc<str> = key.into();
        inner.live.insert(key.clone(), (expires_at, value));
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(true)
    }

    /// Adds `key`, or extends it to a later expiry.
    pub fn insert(&self, key: &str, value: V, expires_at: u64, now: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.purge(now);
        match inner.live.get(key).map(|(e, _)| *e) {
            Some(old) if old >= expires_at => return Ok(()),
            Some(_) => {}
            None if inner.live.len() >= self.capacity => return Err(StoreError::Full(self.name)),
            None => {}
        }
        let key: Arc<str> = key.into();
        inner.live.insert(key.clone(), (expires_at, value));
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }

    /// The value of a live `key`.
    pub fn get(&self, key: &str, now: u64) -> Option<V> {
        let inner = self.lock();
        inner.live.get(key).filter(|(exp, _)| *exp > now).map(|(_, v)| v.clone())
    }

    pub fn contains(&self, key: &str, now: u64) -> bool {
        let inner = self.lock();
        inner.live.get(key).is_some_and(|(exp, _)| *exp > now)
    }

    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A set of expiring keys.
pub type ExpiringSet = ExpiringMap<()>;

pub struct MemoryStore {
    registrations: ExpiringMap<Arc<Registration>>,
    assertions: ExpiringSet,
    revocations: ExpiringSet,
}

impl MemoryStore {
    pub fn new(max_registrations: u64, max_assertions: u64) -> Self {
        MemoryStore {
            registrations: ExpiringMap::new("registration", max_registrations as usize),
            assertions: ExpiringSet::new("assertion replay", max_assertions as usize),
            // Revocations are authenticated and bounded by the number of live tokens.
            revocations: ExpiringSet::new("revocation", 10_000_000),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        let fresh = self.registrations.insert_new(
            &registration.client_id,
            Arc::new(registration.clone()),
            registration.expires_at,
            unix_now(),
        )?;
        if fresh {
            Ok(())
        } else {
            Err(StoreError::Backend("client_id collision".into()))
        }
    }

    async fn registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        Ok(self.registrations.get(client_id, unix_now()).map(|r| (*r).clone()))
    }

    async fn remember_assertion(&self, id: &str, expires_at: u64) -> Result<bool, StoreError> {
        self.assertions.insert_new(id, (), expires_at, unix_now())
    }

    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        self.revocations.insert(jti, (), expires_at, unix_now())
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
        assert_eq!(set.insert_new("a", (), 100, 50), Ok(true));
        assert_eq!(set.insert_new("a", (), 100, 60), Ok(false));
        // after expiry the entry is gone and the id may be used again
        assert_eq!(set.insert_new("a", (), 200, 100), Ok(true));
    }

    #[test]
    fn full_set_refuses_instead_of_forgetting() {
        let set = ExpiringSet::new("t", 2);
        assert_eq!(set.insert_new("a", (), 100, 0), Ok(true));
        assert_eq!(set.insert_new("b", (), 100, 0), Ok(true));
        assert_eq!(set.insert_new("c", (), 100, 0), Err(StoreError::Full("t")));
        assert_eq!(set.insert_new("a", (), 100, 0), Ok(false), "a is still remembered");
        // expired entries make room
        assert_eq!(set.insert_new("c", (), 300, 150), Ok(true));
    }

    #[test]
    fn reinsert_with_later_expiry_survives_old_heap_entry() {
        let set = ExpiringSet::new("t", 10);
        set.insert("j", (), 100, 0).unwrap();
        set.insert("j", (), 300, 50).unwrap();
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
            binding: super::super::ClientBinding::SoftwareStatement {
                software_id: Some("s".into()),
                trusted: true,
                jwks: None,
                jwks_uri: Some("https://x/jwks".into()),
            },
            scope: "a:read".into(),
            metadata: serde_json::json!({"client_name": "x"}),
        };
        store.put_registration(&reg).await.unwrap();
        assert_eq!(store.registration("c1").await.unwrap(), Some(reg.clone()));
        assert_eq!(store.registration("c2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_full_registration_table_refuses_instead_of_evicting() {
        let store = MemoryStore::new(2, 1000);
        let mut reg = Registration {
            client_id: String::new(),
            issued_at: unix_now(),
            expires_at: unix_now() + 60,
            binding: super::super::ClientBinding::SoftwareStatement {
                software_id: None,
                trusted: true,
                jwks: None,
                jwks_uri: Some("https://x/jwks".into()),
            },
            scope: "a:read".into(),
            metadata: serde_json::json!({}),
        };
        for id in ["a", "b"] {
            reg.client_id = id.into();
            store.put_registration(&reg).await.unwrap();
        }
        reg.client_id = "c".into();
        assert_eq!(store.put_registration(&reg).await, Err(StoreError::Full("registration")));
        for id in ["a", "b"] {
            assert!(store.registration(id).await.unwrap().is_some(), "{id} was displaced");
        }
    }
}
