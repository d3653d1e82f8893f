//! Checking presented secrets: Argon2 hashes (client secrets, people's passwords) with bounded
//! concurrent work, and plain secrets in constant time.

use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Argon2 verification is deliberately slow (tens of milliseconds of CPU); bounding how many run
/// at once keeps a flood of wrong passwords or secrets from taking every core.
pub struct Argon2Verifier {
    permits: Semaphore,
}

impl Default for Argon2Verifier {
    fn default() -> Self {
        Self::new(2)
    }
}

impl Argon2Verifier {
    pub fn new(concurrent: usize) -> Self {
        Argon2Verifier {
            permits: Semaphore::new(concurrent.max(1)),
        }
    }

    /// Does `presented` match the PHC string `phc`? Runs off the async threads; false on any
    /// malformed hash.
    pub async fn verify(&self, phc: &str, presented: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (phc, presented) = (phc.to_string(), presented.to_string());
        tokio::task::spawn_blocking(move || {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            PasswordHash::new(&phc)
                .map(|hash| argon2::Argon2::default().verify_password(presented.as_bytes(), &hash).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// Compares a presented secret with a known one in constant time (hashing first so that the
/// lengths do not leak either).
pub fn plain_matches(expected: &str, presented: &str) -> bool {
    let a = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, expected.as_bytes());
    let b = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

/// An Argon2id PHC string for `secret` with a random salt (`oada-gateway hash-secret`, tests).
pub fn hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).expect("the system random number generator failed");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("hashing with default parameters cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_secret_comparison() {
        assert!(plain_matches("a-long-secret-value", "a-long-secret-value"));
        assert!(!plain_matches("a-long-secret-value", "a-long-secret-valuX"));
        assert!(!plain_matches("a-long-secret-value", ""));
    }

    #[tokio::test]
    async fn argon2_round_trip() {
        let v = Argon2Verifier::default();
        let phc = hash("correct horse");
        assert!(v.verify(&phc, "correct horse").await);
        assert!(!v.verify(&phc, "wrong horse").await);
        assert!(!v.verify("not a hash", "x").await);
    }
}
