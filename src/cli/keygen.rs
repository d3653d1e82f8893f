//! `oada-gateway keygen` and `oada-gateway hash-secret`.

use crate::keys::{self, generate, SigningKey};
use std::io::{Read, Write};
use std::path::Path;

pub fn run(alg: &str, kid: &str, out: &Path) -> i32 {
    let Some(algorithm) = keys::parse_signing_alg(alg) else {
        eprintln!("keygen: unsupported --alg {alg}; expected RS256, ES256 or EdDSA");
        return 2;
    };
    let pem = match generate::private_key_pem(algorithm) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keygen: {e}");
            return 1;
        }
    };
    let key = match SigningKey::from_pem(kid, algorithm, pem.as_bytes()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("keygen: generated key did not load: {e}");
            return 1;
        }
    };
    if let Err(e) = write_private(out, pem.as_bytes()) {
        eprintln!("keygen: cannot write {}: {e}", out.display());
        return 1;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&key.public.to_json()).expect("JWK serializes")
    );
    eprintln!("wrote {} ({alg}, kid {kid}); the JWK above is its public half", out.display());
    0
}

/// Creates `path` with mode 0600; refuses to overwrite an existing key.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// Hashes a secret read from stdin. Client secrets must be long random strings (16 characters
/// at least); a person's password (`--password`) at least 8 characters.
pub fn hash_secret(password: bool) -> i32 {
    let mut secret = String::new();
    if std::io::stdin().read_to_string(&mut secret).is_err() {
        eprintln!("hash-secret: cannot read the secret from stdin");
        return 1;
    }
    let secret = secret.trim_end_matches(['\r', '\n']);
    let minimum = if password { 8 } else { 16 };
    if secret.chars().count() < minimum {
        if password {
            eprintln!("hash-secret: the password is shorter than {minimum} characters");
        } else {
            eprintln!("hash-secret: the secret is shorter than {minimum} characters; use a long random one (e.g. openssl rand -base64 32)");
        }
        return 1;
    }
    println!("{}", crate::secrets::hash(secret));
    0
}
