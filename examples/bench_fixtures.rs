//! Fixtures for the load benchmark (`benches/load.sh`), made with the gateway's own key and token
//! code: signing keys (and the RS256 public key as SPKI PEM for HAProxy's `jwt_verify`), access
//! tokens, single-use client assertions, and a flood of distinct tokens for the memory test.
//!
//!   cargo run --release --example bench_fixtures -- keys DIR
//!   cargo run --release --example bench_fixtures -- tokens KEY.pem ALG ISSUER COUNT OUT
//!   cargo run --release --example bench_fixtures -- jwks KEY.pem ALG OUT
//!   cargo run --release --example bench_fixtures -- assertions KEY.pem KID CLIENT_ID AUD COUNT OUT
//!   cargo run --release --example bench_fixtures -- flood KEY.pem ALG ISSUER URL COUNT CONNECTIONS

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use jsonwebtoken::Algorithm;
use oada_gateway::ids::unix_now;
use oada_gateway::keys::{generate, jwk::algorithm_name, KeyRing, SigningKey};
use oada_gateway::partner::PartnerKey;
use oada_gateway::scope::ScopeSet;
use oada_gateway::token::TokenIssuer;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCOPE: &str = "weather.observations:read";

fn alg(name: &str) -> Algorithm {
    oada_gateway::keys::parse_signing_alg(name).unwrap_or_else(|| panic!("unknown alg {name}"))
}

fn issuer(key_pem: &str, alg_name: &str, iss: &str) -> TokenIssuer {
    let pem = std::fs::read(key_pem).expect("read key");
    let key = SigningKey::from_pem("bench", alg(alg_name), &pem).expect("load key");
    TokenIssuer::new(Arc::new(KeyRing::new(vec![key])), iss, iss, Duration::from_secs(6 * 3600))
}

/// Gateway keys for each algorithm, the RS256 public key for HAProxy, and a partner (EdDSA key,
/// registration document).
fn keys(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, a) in [("rs256", Algorithm::RS256), ("es256", Algorithm::ES256), ("eddsa", Algorithm::EdDSA)] {
        std::fs::write(dir.join(format!("gw-{name}.pem")), generate::private_key_pem(a).unwrap()).unwrap();
    }
    let rsa_pem = std::fs::read_to_string(dir.join("gw-rs256.pem")).unwrap();
    let der = pem::parse(rsa_pem).unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(der.contents()).unwrap();
    let spki = pair.public_key().as_der().unwrap();
    std::fs::write(
        dir.join("gw-rs256.pub.pem"),
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec())),
    )
    .unwrap();
    let partner_pem = generate::private_key_pem(Algorithm::EdDSA).unwrap();
    std::fs::write(dir.join("partner.pem"), &partner_pem).unwrap();
    let public = SigningKey::from_pem("partner-1", Algorithm::EdDSA, partner_pem.as_bytes())
        .unwrap()
        .public
        .to_json();
    let doc = serde_json::json!({"client_name": "loadtest-partner", "jwks": {"keys": [public]}});
    std::fs::write(dir.join("partner.json"), doc.to_string()).unwrap();
}

fn tokens(key: &str, alg_name: &str, iss: &str, count: usize, out: &str) {
    let issuer = issuer(key, alg_name, iss);
    let scope = ScopeSet::parse(SCOPE).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let now = unix_now();
    for i in 0..count {
        let t = issuer.issue(&format!("client-{}", i % 64), &scope, now).unwrap();
        writeln!(file, "{}", t.access_token).unwrap();
    }
}

fn assertions(key: &str, kid: &str, client_id: &str, aud: &str, count: usize, out: &str) {
    let pem = std::fs::read(key).unwrap();
    let mut partner = PartnerKey::from_pem(&pem).unwrap();
    partner.kid = Some(kid.to_string());
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let now = unix_now();
    for _ in 0..count {
        let a = partner.assertion(client_id, aud, now);
        // a complete form body per line, ready for wrk
        writeln!(
            file,
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
        )
        .unwrap();
    }
}

/// Sends `count` requests, each with a distinct freshly signed token, over `connections`
/// keep-alive connections; every answer must be 200.
fn flood(key: &str, alg_name: &str, iss: &str, url: &str, count: u64, connections: u64) {
    let issuer = Arc::new(issuer(key, alg_name, iss));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(connections as usize)
            .build()
            .unwrap();
        let scope = ScopeSet::parse(SCOPE).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (issuer, http, sent, failed, scope, url) =
                (issuer.clone(), http.clone(), sent.clone(), failed.clone(), scope.clone(), url.to_string());
            tasks.push(tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::Relaxed) < count {
                    let token = issuer.issue("flood", &scope, unix_now()).unwrap().access_token;
                    match http.get(&url).bearer_auth(token).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"requests\": {count}, \"failed\": {}, \"seconds\": {elapsed:.1}, \"alg\": \"{}\"}}",
        failed.load(Ordering::Relaxed),
        algorithm_name(alg(alg_name))
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["keys", dir] => keys(Path::new(dir)),
        ["tokens", key, alg, iss, count, out] => tokens(key, alg, iss, count.parse().unwrap(), out),
        ["jwks", key, alg, out] => {
            // the public key set of `tokens`' signer, for a gateway that takes it as another issuer
            let pem = std::fs::read(key).expect("read key");
            let ring = KeyRing::new(vec![SigningKey::from_pem("bench", self::alg(alg), &pem).expect("load key")]);
            let jwks = ring.jwks(std::time::SystemTime::now());
            std::fs::write(out, jwks.to_string()).unwrap();
        }
        ["assertions", key, kid, client_id, aud, count, out] => {
            assertions(key, kid, client_id, aud, count.parse().unwrap(), out)
        }
        ["flood", key, alg, iss, url, count, connections] => {
            flood(key, alg, iss, url, count.parse().unwrap(), connections.parse().unwrap())
        }
        _ => {
            eprintln!("see the header of examples/bench_fixtures.rs for usage");
            std::process::exit(2);
        }
    }
}
