//! The revocations this process knows of, held in memory so that the proxy never waits for a
//! store to check a token: access tokens by `jti` and grants (everything issued from one code or
//! refresh-token family) by grant id. With the in-memory store this list is the store's; with a
//! shared store it is the local mirror the store keeps current.
//!
//! Each change bumps an epoch. A cached token remembers the epoch it was checked at, so a cache
//! hit costs one atomic load while nothing was revoked, and a revocation reaches cached tokens on
//! their next use.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What is revoked: kept apart so that a `jti` can never be mistaken for a grant id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked<'a> {
    Token(&'a str),
    Grant(&'a str),
}

impl Revoked<'_> {
    /// The store key of a revocation (`jti:…` or `grant:…`).
    pub fn key(&self) -> String {
        match self {
            Revoked::Token(jti) => format!("jti:{jti}"),
            Revoked::Grant(id) => format!("grant:{id}"),
        }
    }
}

/// A revocation key's 64-bit hash, as cached tokens carry it (no string per cached token).
pub type RevocationHash = u64;

pub struct RevocationList {
    hasher: std::collections::hash_map::RandomState,
    epoch: AtomicU64,
    /// Unix seconds since which the list may miss revocations (a mirror that lost its store), or
    /// 0 while it is current.
    stale_since: AtomicU64,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<RevocationHash, u64>,
    by_expiry: BinaryHeap<Reverse<(u64, RevocationHash)>>,
}

impl Inner {
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((exp, _))) = self.by_expiry.peek() {
            if *exp > now {
                break;
            }
            let Reverse((exp, key)) = self.by_expiry.pop().expect("peeked");
            if self.live.get(&key) == Some(&exp) {
                self.live.remove(&key);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the revocation list is full")]
pub struct RevocationListFull;

impl RevocationList {
    pub fn new(capacity: usize) -> Self {
        RevocationList {
            hasher: Default::default(),
            epoch: AtomicU64::new(0),
            stale_since: AtomicU64::new(0),
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn hash(&self, revoked: Revoked<'_>) -> RevocationHash {
        match revoked {
            Revoked::Token(jti) => self.hasher.hash_one(("jti", jti)),
            Revoked::Grant(id) => self.hasher.hash_one(("grant", id)),
        }
    }

    /// `None` while the list is current; else since when it may miss revocations.
    pub fn stale_since(&self) -> Option<u64> {
        match self.stale_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(since),
        }
    }

    /// The list may miss revocations from `now` on (kept at the first moment of an outage).
    pub fn mark_stale(&self, now: u64) {
        let _ = self.stale_since.compare_exchange(0, now.max(1), Ordering::AcqRel, Ordering::Acquire);
    }

    /// The list is current again (after a full load).
    pub fn mark_current(&self) {
        self.stale_since.store(0, Ordering::Release);
    }

    /// Bumped by every change; a token checked at the current epoch needs no new check.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records a revocation until `expires_at` (when what it revokes would have expired anyway).
    pub fn insert(&self, revoked: Revoked<'_>, expires_at: u64, now: u64) -> Result<(), RevocationListFull> {
        let key = self.hash(revoked);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.purge(now);
        match inner.live.get(&key).copied() {
            Some(old) if old >= expires_at => return Ok(()),
            Some(_) => {}
            None if inner.live.len() >= self.capacity => return Err(RevocationListFull),
            None => {}
        }
        inner.live.insert(key, expires_at);
        inner.by_expiry.push(Reverse((expires_at, key)));
        drop(inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Is any of `hashes` revoked at `now`?
    pub fn any_revoked(&self, hashes: &[RevocationHash], now: u64) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        hashes.iter().any(|h| inner.live.get(h).is_some_and(|exp| *exp > now))
    }

    pub fn is_revoked(&self, revoked: Revoked<'_>, now: u64) -> bool {
        self.any_revoked(&[self.hash(revoked)], now)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole list (a mirror resynchronised from its store); bumps the epoch.
    pub fn replace_all<'a>(&self, entries: impl IntoIterator<Item = (Revoked<'a>, u64)>, now: u64) {
        let mut fresh = Inner::default();
        for (revoked, exp) in entries {
            if exp > now {
                let key = self.hash(revoked);
                fresh.live.insert(key, exp);
                fresh.by_expiry.push(Reverse((exp, key)));
            }
        }
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_expire_and_bump_the_epoch() {
        let list = RevocationList::new(10);
        let e0 = list.epoch();
        list.insert(Revoked::Token("j1"), 100, 0).unwrap();
        assert!(list.epoch() > e0);
        assert!(list.is_revoked(Revoked::Token("j1"), 50));
        assert!(!list.is_revoked(Revoked::Grant("j1"), 50), "a jti is not a grant id");
        assert!(!list.is_revoked(Revoked::Token("j1"), 100));
    }

    #[test]
    fn a_full_list_refuses() {
        let list = RevocationList::new(1);
        list.insert(Revoked::Token("a"), 100, 0).unwrap();
        assert_eq!(list.insert(Revoked::Token("b"), 100, 0), Err(RevocationListFull));
        assert!(list.insert(Revoked::Token("b"), 300, 150).is_ok(), "expired entries make room");
    }
}
