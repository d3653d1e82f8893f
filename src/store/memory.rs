//! The in-memory store: bounded tables in this process.

use super::{
    CodeGrant, CodeUse, CounterTotals, CounterUpdate, LoginFailures, PendingAuthorization, Registration, RefreshFamily, RefreshKey, RefreshUse, RevocationList, Revoked,
    Session, Store, StoreError,
};
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

    /// Sets `key` (new or not) until `expires_at`; a full table refuses new keys.
    pub fn put(&self, key: &str, value: V, expires_at: u64, now: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.purge(now);
        if !inner.live.contains_key(key) && inner.live.len() >= self.capacity {
            return Err(StoreError::Full(self.name));
        }
        let key: Arc<str> = key.into();
        inner.live.insert(key.clone(), (expires_at, value));
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }

    pub fn remove(&self, key: &str) {
        self.lock().live.remove(key);
    }

    /// Changes a live `key`'s value in place, under the table's lock (so the read and the write
    /// are one step); `None` when the key is not live.
    pub fn update<R>(&self, key: &str, now: u64, change: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut inner = self.lock();
        match inner.live.get_mut(key) {
            Some((exp, value)) if *exp > now => Some(change(value)),
            _ => None,
        }
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

/// Bounds of the in-memory tables that have no setting of their own.
const MAX_PENDING: usize = 100_000;
const MAX_SESSIONS: usize = 1_000_000;
const MAX_CONSENTS: usize = 1_000_000;
const MAX_CODES: usize = 100_000;
const MAX_REFRESH: usize = 1_000_000;
const MAX_LOGIN_FAILURE_KEYS: usize = 100_000;
const MAX_COUNTERS: usize = 1_000_000;
/// Revocations are authenticated and bounded by the number of live tokens.
const MAX_REVOCATIONS: usize = 10_000_000;

pub struct MemoryStore {
    registrations: ExpiringMap<Arc<Registration>>,
    assertions: ExpiringSet,
    revocations: Arc<RevocationList>,
    pending: ExpiringMap<PendingAuthorization>,
    sessions: ExpiringMap<Session>,
    consents: ExpiringMap<String>,
    /// A code's grant and whether it was used.
    codes: ExpiringMap<(CodeGrant, bool)>,
    /// Refresh tokens (by hash): their family and generation.
    refresh_tokens: ExpiringMap<(String, u32)>,
    refresh_families: ExpiringMap<RefreshFamily>,
    /// Held across a rotation, which reads and writes both refresh tables.
    rotation: Mutex<()>,
    login_failures: ExpiringMap<LoginFailures>,
    /// Shared counters, by key and window (one process shares with itself: for tests).
    counters: ExpiringMap<u64>,
}

impl MemoryStore {
    pub fn new(max_registrations: u64, max_assertions: u64) -> Self {
        MemoryStore {
            registrations: ExpiringMap::new("registration", max_registrations as usize),
            assertions: ExpiringSet::new("assertion replay", max_assertions as usize),
            revocations: Arc::new(RevocationList::new(MAX_REVOCATIONS)),
            pending: ExpiringMap::new("pending authorization", MAX_PENDING),
            sessions: ExpiringMap::new("session", MAX_SESSIONS),
            consents: ExpiringMap::new("consent", MAX_CONSENTS),
            codes: ExpiringMap::new("authorization code", MAX_CODES),
            refresh_tokens: ExpiringMap::new("refresh token", MAX_REFRESH),
            refresh_families: ExpiringMap::new("refresh token family", MAX_REFRESH),
            rotation: Mutex::new(()),
            login_failures: ExpiringMap::new("login failure", MAX_LOGIN_FAILURE_KEYS),
            counters: ExpiringMap::new("counter", MAX_COUNTERS),
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

    async fn revoke(&self, revoked: Revoked<'_>, expires_at: u64) -> Result<(), StoreError> {
        self.revocations
            .insert(revoked, expires_at, unix_now())
            .map_err(|_| StoreError::Full("revocation"))
    }

    fn revocations(&self) -> Arc<RevocationList> {
        self.revocations.clone()
    }

    async fn put_pending(&self, id: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        self.pending.put(id, pending.clone(), pending.expires_at, unix_now())
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        Ok(self.pending.get(id, unix_now()))
    }

    async fn delete_pending(&self, id: &str) -> Result<(), StoreError> {
        self.pending.remove(id);
        Ok(())
    }

    async fn put_session(&self, id: &str, session: &Session) -> Result<(), StoreError> {
        self.sessions.put(id, session.clone(), session.expires_at, unix_now())
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.get(id, unix_now()))
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.sessions.remove(id);
        Ok(())
    }

    async fn put_consent(&self, key: &str, scope: &str, expires_at: u64) -> Result<(), StoreError> {
        self.consents.put(key, scope.to_string(), expires_at, unix_now())
    }

    async fn consent(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.consents.get(key, unix_now()))
    }

    async fn put_code(&self, code_hash: &str, grant: &CodeGrant) -> Result<(), StoreError> {
        let fresh = self.codes.insert_new(code_hash, (grant.clone(), false), grant.expires_at, unix_now())?;
        if fresh {
            Ok(())
        } else {
            Err(StoreError::Backend("authorization code collision".into()))
        }
    }

    async fn peek_code(&self, code_hash: &str) -> Result<Option<(CodeGrant, bool)>, StoreError> {
        Ok(self.codes.get(code_hash, unix_now()))
    }

    async fn use_code(&self, code_hash: &str) -> Result<CodeUse, StoreError> {
        let used = self.codes.update(code_hash, unix_now(), |(grant, used)| {
            let first = !*used;
            *used = true;
            if first {
                CodeUse::Fresh(grant.clone())
            } else {
                CodeUse::Reused(grant.clone())
            }
        });
        Ok(used.unwrap_or(CodeUse::Unknown))
    }

    async fn put_refresh_family(&self, family: &RefreshFamily, first: &RefreshKey) -> Result<(), StoreError> {
        let now = unix_now();
        let _rotation = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh_families.put(&family.id, family.clone(), family.expires_at, now)?;
        self.refresh_tokens
            .put(&first.token_hash, (family.id.clone(), family.current), family.expires_at, now)
    }

    async fn rotate_refresh(&self, token: &RefreshKey, new: &RefreshKey, now: u64) -> Result<RefreshUse, StoreError> {
        let _rotation = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        let Some((family_id, generation)) = self.refresh_tokens.get(&token.token_hash, now) else {
            return Ok(RefreshUse::Unknown);
        };
        let Some(mut family) = self.refresh_families.get(&family_id, now) else {
            return Ok(RefreshUse::Unknown);
        };
        if !family.is_live(now) {
            return Ok(RefreshUse::Unknown);
        }
        if generation != family.current {
            family.revoked = true;
            self.refresh_families.put(&family.id, family.clone(), family.expires_at, now)?;
            return Ok(RefreshUse::Reused(family));
        }
        family.current += 1;
        family.last_used = now;
        self.refresh_tokens
            .put(&new.token_hash, (family.id.clone(), family.current), family.expires_at, now)?;
        self.refresh_families.put(&family.id, family.clone(), family.expires_at, now)?;
        Ok(RefreshUse::Rotated(family))
    }

    async fn refresh_family(&self, token: &RefreshKey) -> Result<Option<(RefreshFamily, bool)>, StoreError> {
        let now = unix_now();
        let Some((family_id, generation)) = self.refresh_tokens.get(&token.token_hash, now) else {
            return Ok(None);
        };
        Ok(self
            .refresh_families
            .get(&family_id, now)
            .map(|f| {
                let newest = f.current == generation;
                (f, newest)
            }))
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        let _rotation = self.rotation.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh_families.update(family_id, unix_now(), |f| f.revoked = true);
        Ok(())
    }

    async fn add_login_failure(&self, key: &str, now: u64, window: u64) -> Result<LoginFailures, StoreError> {
        if let Some(f) = self.login_failures.update(key, now, |f| {
            f.count += 1;
            f.last_at = now;
            *f
        }) {
            // the window restarts at each failure
            self.login_failures.put(key, f, now + window, now)?;
            return Ok(f);
        }
        let first = LoginFailures { count: 1, last_at: now };
        self.login_failures.put(key, first, now + window, now)?;
        Ok(first)
    }

    async fn login_failures(&self, key: &str) -> Result<LoginFailures, StoreError> {
        Ok(self.login_failures.get(key, unix_now()).unwrap_or_default())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.login_failures.remove(key);
        Ok(())
    }

    async fn add_to_counters(&self, updates: &[CounterUpdate]) -> Result<Vec<CounterTotals>, StoreError> {
        let now = unix_now();
        updates
            .iter()
            .map(|u| {
                let key = format!("{}:{}", u.key, u.window);
                let expires_at = now + u.ttl.as_secs().max(1);
                let current = match self.counters.update(&key, now, |n| {
                    *n += u.add;
                    *n
                }) {
                    Some(n) => n,
                    None => {
                        self.counters.put(&key, u.add, expires_at, now)?;
                        u.add
                    }
                };
                let previous = if u.with_previous && u.window > 0 {
                    self.counters.get(&format!("{}:{}", u.key, u.window - 1), now).unwrap_or(0)
                } else {
                    0
                };
                Ok(CounterTotals { current, previous })
            })
            .collect()
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
