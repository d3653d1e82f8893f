//! `client_id`s for pre-agreed partners that carry their own binding and expiry under a MAC, so
//! that registering stores nothing: no flood of registrations can fill, evict or displace
//! anything, every replica sharing the signing keys accepts the same ids, and a `201` always
//! names a working `client_id`.
//!
//! Layout (base64url after the `p1.` prefix): version, the partner (first 8 bytes of the
//! BLAKE3 hash of its configured name), a 4-byte digest of the partner's configured scopes when
//! the id was issued, a 64-bit mask of the registered subset of them, issue and expiry times,
//! 8 random bytes, then a 128-bit keyed BLAKE3 MAC. The MAC key is derived from a signing key
//! (the signing one issues; every key of the ring verifies, so ids survive a key rotation as long
//! as their key stays in the ring).
//!
//! If the partner's configured scopes change, an id that registered all of them keeps working
//! with the new set; an id that registered a subset no longer decodes and the partner registers
//! again.

use crate::keys::KeyRing;
use crate::scope::ScopeSet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub const PREFIX: &str = "p1.";
const VERSION: u8 = 1;
const FLAG_ALL_SCOPES: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 1 + 8 + 4 + 8 + 8 + 8 + 8;
const MAC_LEN: usize = 16;

/// What a partner id says, once its MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerId {
    pub partner: [u8; 8],
    pub issued_at: u64,
    pub expires_at: u64,
    all_scopes: bool,
    scope_digest: [u8; 4],
    scope_mask: u64,
}

/// The partner hash a configured name is known by in ids.
pub fn partner_hash(name: &str) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..8]);
    out
}

/// A partner's configured scopes in a fixed order (the mask's bit order) and their digest.
fn ordered(allowed: &ScopeSet) -> (Vec<String>, [u8; 4]) {
    let mut names: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    names.sort();
    names.dedup();
    let mut digest = [0u8; 4];
    digest.copy_from_slice(&blake3::hash(names.join(" ").as_bytes()).as_bytes()[..4]);
    (names, digest)
}

impl PartnerId {
    /// The registered scopes, given the partner's configured scopes now; `None` when the id
    /// registered a subset of a scope list that has changed since.
    pub fn scopes(&self, allowed: &ScopeSet) -> Option<ScopeSet> {
        if self.all_scopes {
            return Some(allowed.clone());
        }
        let (names, digest) = ordered(allowed);
        if digest != self.scope_digest {
            return None;
        }
        let chosen = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && self.scope_mask & (1 << i) != 0)
            .map(|(_, n)| n.as_str());
        ScopeSet::from_iter_str(chosen).ok()
    }
}

/// Issues and opens partner ids with MAC keys derived from the gateway's signing keys.
pub struct PartnerIds {
    /// The issuing key first.
    keys: Vec<[u8; 32]>,
}

fn mac(key: &[u8; 32], payload: &[u8]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&blake3::keyed_hash(key, payload).as_bytes()[..MAC_LEN]);
    out
}

impl PartnerIds {
    pub fn new(keys: &KeyRing) -> Self {
        let mut ordered: Vec<[u8; 32]> = vec![keys.signer().id_mac_key];
        ordered.extend(keys.keys().iter().map(|k| k.id_mac_key).filter(|k| *k != keys.signer().id_mac_key));
        PartnerIds { keys: ordered }
    }

    /// A new id for the partner `name` with configured scopes `allowed`, registering `registered`
    /// (a subset of them).
    pub fn issue(&self, name: &str, allowed: &ScopeSet, registered: &ScopeSet, issued_at: u64, expires_at: u64) -> String {
        let (names, digest) = ordered(allowed);
        let registered: Vec<String> = registered.iter().map(|s| s.to_string()).collect();
        let all = names.iter().all(|n| registered.contains(n));
        let mask = names
            .iter()
            .enumerate()
            .filter(|(i, n)| *i < 64 && registered.contains(n))
            .fold(0u64, |m, (i, _)| m | (1 << i));
        let mut payload = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
        payload.push(VERSION);
        payload.push(if all { FLAG_ALL_SCOPES } else { 0 });
        payload.extend_from_slice(&partner_hash(name));
        payload.extend_from_slice(&digest);
        payload.extend_from_slice(&mask.to_be_bytes());
        payload.extend_from_slice(&issued_at.to_be_bytes());
        payload.extend_from_slice(&expires_at.to_be_bytes());
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random number generator failed");
        payload.extend_from_slice(&nonce);
        let tag = mac(&self.keys[0], &payload);
        payload.extend_from_slice(&tag);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&payload))
    }

    /// The id's contents if it is a partner id whose MAC verifies with a key of the ring
    /// (expiry is the caller's to check).
    pub fn open(&self, client_id: &str) -> Option<PartnerId> {
        let encoded = client_id.strip_prefix(PREFIX)?;
        if encoded.len() > 2 * (PAYLOAD_LEN + MAC_LEN) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if bytes.len() != PAYLOAD_LEN + MAC_LEN || bytes[0] != VERSION {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        let valid = self
            .keys
            .iter()
            .any(|key| subtle::ConstantTimeEq::ct_eq(&mac(key, payload)[..], tag).into());
        if !valid {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
        let mut partner = [0u8; 8];
        partner.copy_from_slice(&payload[2..10]);
        let mut scope_digest = [0u8; 4];
        scope_digest.copy_from_slice(&payload[10..14]);
        Some(PartnerId {
            partner,
            all_scopes: payload[1] & FLAG_ALL_SCOPES != 0,
            scope_digest,
            scope_mask: u64_at(14),
            issued_at: u64_at(22),
            expires_at: u64_at(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, KeyLifecycle, SigningKey};
    use jsonwebtoken::Algorithm;

    fn pem() -> String {
        generate::private_key_pem(Algorithm::ES256).unwrap()
    }

    fn ring_of(pems: &[&str]) -> KeyRing {
        KeyRing::new(
            pems.iter()
                .enumerate()
                .map(|(i, pem)| {
                    let key = SigningKey::from_pem(&format!("k{i}"), Algorithm::ES256, pem.as_bytes()).unwrap();
                    // the first key signs
                    key.with_lifecycle(if i == 0 { KeyLifecycle::ACTIVE } else { KeyLifecycle::NEXT })
                })
                .collect(),
        )
    }

    fn ring(n: usize) -> KeyRing {
        let pems: Vec<String> = (0..n).map(|_| pem()).collect();
        ring_of(&pems.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn round_trip_with_full_and_narrowed_scopes() {
        let ids = PartnerIds::new(&ring(1));
        let allowed = scopes("b:read a:read c:write");
        let full = ids.issue("mm", &allowed, &allowed, 100, 200);
        let opened = ids.open(&full).unwrap();
        assert_eq!(opened.partner, partner_hash("mm"));
        assert_eq!((opened.issued_at, opened.expires_at), (100, 200));
        assert_eq!(opened.scopes(&allowed), Some(allowed.clone()));
        // a scope list change keeps full registrations working with the new list
        let changed = scopes("a:read d:read");
        assert_eq!(opened.scopes(&changed), Some(changed.clone()));

        let narrow = ids.issue("mm", &allowed, &scopes("c:write a:read"), 100, 200);
        let opened = ids.open(&narrow).unwrap();
        assert_eq!(opened.scopes(&allowed).unwrap().to_string(), "a:read c:write");
        assert_eq!(opened.scopes(&changed), None, "a narrowed id does not survive a scope change");
        assert_ne!(full, ids.issue("mm", &allowed, &allowed, 100, 200), "each registration gets its own id");
    }

    #[test]
    fn forged_altered_or_foreign_ids_do_not_open() {
        let ids = PartnerIds::new(&ring(2));
        let allowed = scopes("a:read");
        let id = ids.issue("mm", &allowed, &allowed, 100, 200);
        let mut bytes = URL_SAFE_NO_PAD.decode(id.strip_prefix(PREFIX).unwrap()).unwrap();
        bytes[30] ^= 1; // move the expiry
        let altered = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(ids.open(&altered).is_none());
        assert!(PartnerIds::new(&ring(1)).open(&id).is_none(), "another gateway's keys");
        for junk in ["", "p1.", "p1.!!!", "p1.AAAA", "random-client-id"] {
            assert!(ids.open(junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn ids_survive_a_rotation_while_their_key_stays_in_the_ring() {
        let (old, new) = (pem(), pem());
        let allowed = scopes("a:read");
        let id = PartnerIds::new(&ring_of(&[&old])).issue("mm", &allowed, &allowed, 1, 2);
        assert!(PartnerIds::new(&ring_of(&[&new, &old])).open(&id).is_some());
        assert!(PartnerIds::new(&ring_of(&[&new])).open(&id).is_none());
    }
}
