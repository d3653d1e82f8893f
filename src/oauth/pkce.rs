//! PKCE (RFC 7636) with S256 only: `plain` would hand the code's protection to anyone who saw the
//! authorization request.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// An S256 challenge: BASE64URL(SHA-256(verifier)), 43 characters.
pub fn is_valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A verifier: 43 to 128 unreserved characters (§4.1).
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len()) && verifier.bytes().all(unreserved)
}

/// The S256 challenge of `verifier`.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// Does `verifier` answer `challenge` (compared in constant time)?
pub fn verify(challenge: &str, verifier: &str) -> bool {
    is_valid_verifier(verifier) && crate::secrets::plain_matches(challenge, &challenge_of(verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_as_another_implementation_computes_it() {
        // python3: base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=")
        let verifier = "dBjftJeZ4CVP-mJ92K6RL6XNB4YhgrIjNcTkHkUZeSA";
        let challenge = "tWl-rfut94PAsOGDdk7rlMKNSGnsL2Qa_-_s5NLDcVA";
        assert_eq!(challenge_of(verifier), challenge);
        assert!(verify(challenge, verifier));
        assert!(!verify(challenge, "dBjftJeZ4CVP-mJ92K6RL6XNB4YhgrIjNcTkHkUZeSB"));
        assert!(!verify(challenge, "short"));
        assert!(is_valid_challenge(challenge));
        assert!(!is_valid_challenge("plain-text-challenge"));
    }
}
