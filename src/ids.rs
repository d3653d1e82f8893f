//! Random identifiers: client_ids, token `jti`s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `bytes` bytes from the system CSPRNG, base64url-encoded (16 bytes = 128 bits = 22 characters).
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(&buf)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
