//! `oada-gateway check` and `keygen` from the outside: exit codes and messages that name the key.

use crate::harness::write;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oada-gateway"))
}

fn check(dir: &Path, yaml: &str) -> Output {
    let path = write(dir, "gateway.yaml", yaml);
    bin()
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("NOPE")
        .output()
        .unwrap()
}

/// A valid config whose `{placeholder}` parts the tests replace.
fn base(dir: &Path) -> String {
    let pem = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    write(dir, "keys/gw.pem", &pem);
    let client_pem = oada_gateway::keys::generate::private_key_pem(jsonwebtoken::Algorithm::RS256).unwrap();
    let key = oada_gateway::keys::SigningKey::from_pem("mm-1", jsonwebtoken::Algorithm::RS256, client_pem.as_bytes()).unwrap();
    let doc = serde_json::json!({"client_name": "moisturemapper", "jwks": {"keys": [key.public.to_json()]}});
    write(dir, "clients/mm.json", &doc.to_string());
    r#"listen: 127.0.0.1:18080
admin_listen: 127.0.0.1:19090
issuer: http://127.0.0.1:18080
signing_keys:
  - kid: gw-1
    alg: ES256
    private_key_file: keys/gw.pem
token_lifetime: 1h
clients:
  - name: moisturemapper
    registration_file: clients/mm.json
    scopes: [weather.observations:read]
upstreams:
  weather:
    servers: [127.0.0.1:8081]
routes:
  - path: /observations
    methods: [GET]
    scopes: [weather.observations:read]
    upstream: weather
  - path: /health
    auth: none
    upstream: weather
"#
    .to_string()
}

#[test]
fn valid_config_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), &base(dir.path()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": OK"));
    assert!(stdout.contains("127.0.0.1:18080"));
    assert!(stdout.contains("routes: 2"));
    assert!(stdout.contains("weather: 127.0.0.1:8081"));
    assert!(stdout.contains("moisturemapper"));
}

#[test]
fn broken_configs_fail_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = base(dir.path());
    // (what is broken, edit of the good config, text the error must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown top-level key", good.replace("token_lifetime: 1h", "token_lifetme: 1h"), vec!["token_lifetme", "unknown field"]),
        ("unknown nested key", good.replace("    methods: [GET]", "    method: [GET]"), vec!["routes[0]", "unknown field `method`"]),
        ("unknown upstream", good.replace("    upstream: weather\n  - path: /health", "    upstream: wether\n  - path: /health"), vec!["routes[0].upstream", "wether", "weather"]),
        ("bad duration", good.replace("token_lifetime: 1h", "token_lifetime: 5 parsecs"), vec!["token_lifetime", "duration"]),
        ("bad scope", good.replace("    scopes: [weather.observations:read]\n    upstream", "    scopes: [weather]\n    upstream"), vec!["routes[0].scopes[0]", "<type>:<perm>"]),
        ("missing key file", good.replace("keys/gw.pem", "keys/missing.pem"), vec!["signing_keys[0].private_key_file", "missing.pem"]),
        ("unset variable", good.replace("issuer: http://127.0.0.1:18080", "issuer: ${NOPE}"), vec!["issuer", "NOPE is not set"]),
        ("bad address", good.replace("listen: 127.0.0.1:18080", "listen: localhost-8080"), vec!["listen", "IP:PORT"]),
        ("auth none with scopes", good.replace("    auth: none\n", "    auth: none\n    scopes: [a:read]\n"), vec!["routes[1].auth"]),
        ("plain http issuer off loopback", good.replace("issuer: http://127.0.0.1:18080", "issuer: http://api.grounddata.example"), vec!["issuer", "https"]),
        ("unsupported signing alg", good.replace("alg: ES256", "alg: HS256"), vec!["signing_keys[0].alg", "RS256, ES256 or EdDSA"]),
        ("duplicate route", good.replace("  - path: /health\n", "  - path: /observations\n    methods: [GET]\n    upstream: weather\n  - path: /health\n"), vec!["routes[1].methods", "/observations"]),
        ("same port twice", good.replace("admin_listen: 127.0.0.1:19090", "admin_listen: 127.0.0.1:18080"), vec!["admin_listen", "differ"]),
    ];
    for (what, yaml, expected) in cases {
        let out = check(dir.path(), &yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: should fail\n{stderr}");
        assert!(stderr.contains("gateway.yaml"), "{what}: names the file\n{stderr}");
        for text in expected {
            assert!(stderr.contains(text), "{what}: expected `{text}` in\n{stderr}");
        }
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = base(dir.path())
        .replace("token_lifetime: 1h", "token_lifetime: 0")
        .replace("    upstream: weather\n  - path: /health", "    upstream: nowhere\n  - path: /health")
        .replace("listen: 127.0.0.1:18080", "listen: nonsense");
    let out = check(dir.path(), &yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("3 errors"), "{stderr}");
    for key in ["token_lifetime", "routes[0].upstream", "listen"] {
        assert!(stderr.contains(key), "{key} missing from\n{stderr}");
    }
}

#[test]
fn parse_errors_in_different_sections_and_validation_errors_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = base(dir.path())
        // three file-format errors (serde stops at the first of one value), in three sections
        .replace("token_lifetime: 1h", "token_lifetime: 5 parsecs
cahce: {}")
        .replace("    methods: [GET]", "    method: [GET]")
        // and two validation errors elsewhere
        .replace("listen: 127.0.0.1:18080", "listen: nonsense")
        .replace("issuer: http://127.0.0.1:18080", "issuer: ${NOPE}");
    let out = check(dir.path(), &yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for text in ["token_lifetime", "cahce", "routes[0]", "unknown field `method`", "listen", "NOPE is not set"] {
        assert!(stderr.contains(text), "`{text}` missing from\n{stderr}");
    }
    assert!(stderr.contains("5 errors"), "{stderr}");
}

#[test]
fn registration_document_with_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = base(dir.path());
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("clients/mm.json")).unwrap()).unwrap();
    doc["jwks"]["keys"][0]["d"] = serde_json::json!("c2VjcmV0");
    write(dir.path(), "clients/mm.json", &doc.to_string());
    let out = check(dir.path(), &good);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("mm.json"), "{stderr}");
    assert!(stderr.contains("private"), "{stderr}");
}

#[test]
fn the_gateway_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gateway.yaml", "listen: 127.0.0.1:1\n");
    let out = bin().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
}

#[test]
fn keygen_writes_a_private_key_and_prints_the_public_jwk() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let out_file = dir.path().join(format!("{alg}.pem"));
        let out = bin()
            .args(["keygen", "--alg", alg, "--kid", "k-1", "--out"])
            .arg(&out_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let jwk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(jwk["kid"], "k-1");
        assert_eq!(jwk["alg"], alg);
        assert!(jwk.get("d").is_none());
        let pem = std::fs::read_to_string(&out_file).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // never overwrites
        let again = bin()
            .args(["keygen", "--alg", alg, "--kid", "k-2", "--out"])
            .arg(&out_file)
            .output()
            .unwrap();
        assert!(!again.status.success());
        assert_eq!(std::fs::read_to_string(&out_file).unwrap(), pem);
    }
}

#[test]
fn issuers_are_checked_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}issuers:\n  - issuer: https://auth.example.com\n    jwks_uri: http://keys.example.com/jwks\n    algorithms: [HS256]\n    scope_claim: roles\n    introspection: {{endpoint: https://auth.example.com/introspect, client_id: gw, client_secret_env: NOPE}}\n  - issuer: https://auth.example.com\n    startup: later\n",
        base(dir.path()).replace(
            "    scopes: [weather.observations:read]\n    upstream: weather\n  - path: /health",
            "    scopes: [weather.observations:read]\n    issuers: [https://unknown.example]\n    upstream: weather\n  - path: /health"
        )
    );
    let out = check(dir.path(), &yaml);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "issuers[0].jwks_uri: `http://keys.example.com/jwks` must use https",
        "issuers[0].algorithms[0]: `HS256` is not accepted",
        "issuers[0].scope_claim: `roles` is not a scope claim",
        "issuers[0].introspection.client_secret_env: environment variable NOPE is not set",
        "issuers[0].audiences: list the `aud` values",
        "issuers[1].issuer: `https://auth.example.com` is listed twice",
        "issuers[1].startup: `later` is not a start-up mode",
        "issuers[1]: give the issuer's keys",
        "routes[0].issuers[0]: `https://unknown.example` is neither the gateway's issuer nor in issuers[]",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}
