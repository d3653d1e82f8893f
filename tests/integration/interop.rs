//! Third-party clients against the real gateway: Python authlib, Node openid-client and
//! @oada/certs. `tests/interop/setup.sh` installs them (CI runs it first; here it runs once per
//! test binary when something is missing).

use crate::harness::*;
use crate::oauth::{world_with, World};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the clients once; a failure here is a test failure with the installer's output.
fn ensure_clients() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let result = READY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("tests/interop/setup.sh"))
            .output()
            .map_err(|e| format!("cannot run setup.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tests/interop/setup.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs a client program and parses the JSON line it prints.
async fn run_client(program: PathBuf, args: Vec<String>) -> Value {
    ensure_clients();
    let out = tokio::task::spawn_blocking(move || Command::new(&program).args(&args).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("client printed no JSON ({e}):\n{stdout}"))
}

fn partner_files(w: &World) -> (String, String) {
    let key = write(w.gw.dir.path(), "partner/key.pem", &w.partner.pem);
    let doc = write(w.gw.dir.path(), "partner/doc.json", &w.partner.doc.to_string());
    (key.to_string_lossy().into(), doc.to_string_lossy().into())
}

#[tokio::test]
async fn python_authlib_registers_and_uses_private_key_jwt() {
    let w = world_with(Algorithm::RS256).await;
    let (key, doc) = partner_files(&w);
    let result = run_client(
        root().join("target/interop-venv/bin/python"),
        vec![
            root().join("tests/interop/authlib_client.py").to_string_lossy().into(),
            w.gw.issuer.clone(),
            key,
            doc,
            w.gw.url("/observations"),
        ],
    )
    .await;
    assert_eq!(result["token_type"], "Bearer", "{result}");
    assert_eq!(result["scope"], "weather.observations:read");
    assert_eq!(result["expires_in"], 600);
    assert_eq!(result["resource_status"], 200);
    assert_eq!(result["impostor_error"], "invalid_client", "a key that is not the registered one gets no token");
    let client_id = result["client_id"].as_str().unwrap();
    let seen = w.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-oada-client-id"), Some(client_id));
    assert_eq!(seen[0].header("authorization"), None);
}

#[tokio::test]
async fn node_openid_client_discovers_and_uses_private_key_jwt() {
    let w = world_with(Algorithm::ES256).await;
    let (key, doc) = partner_files(&w);
    let result = run_client(
        PathBuf::from("node"),
        vec![
            root().join("tests/interop/node/openid_client.mjs").to_string_lossy().into(),
            w.gw.issuer.clone(),
            key,
            doc,
            w.gw.url("/observations"),
        ],
    )
    .await;
    assert_eq!(result["issuer"], w.gw.issuer, "discovered through RFC 8414 metadata");
    assert_eq!(result["token_type"].as_str().map(str::to_ascii_lowercase), Some("bearer".into()));
    assert_eq!(result["scope"], "weather.observations:read");
    assert_eq!(result["resource_status"], 200, "{result}");
    assert_eq!(w.upstream.requests()[0].header("x-oada-client-id"), result["client_id"].as_str());
}

#[tokio::test]
async fn oada_certs_software_statement_is_registered_and_used() {
    let w = world_with(Algorithm::RS256).await;
    let signer = write(w.gw.dir.path(), "signer.pem", &w.signer_pem);
    let result = run_client(
        PathBuf::from("node"),
        vec![
            root().join("tests/interop/node/oada_certs.mjs").to_string_lossy().into(),
            w.gw.issuer.clone(),
            signer.to_string_lossy().into(),
            "oada-signer-1".into(),
            w.gw.url("/observations"),
        ],
    )
    .await;
    let registered = &result["registered"];
    assert_eq!(registered["status"], 201, "{result}");
    assert_eq!(registered["software_id"], "fieldscout-7f3a");
    assert_eq!(registered["jwks"]["keys"][0]["kid"], "fieldscout-1");
    assert_eq!(registered["scope"], "weather.observations:read", "trusted statements get the configured scopes");
    assert_eq!(result["token"]["scope"], "weather.observations:read");
    assert_eq!(result["resource_status"], 200);
    assert_eq!(result["untrusted"]["status"], 400);
    assert_eq!(result["untrusted"]["body"]["error"], "unapproved_software_statement");
    let metrics = w.gw.metrics().await;
    assert_eq!(
        metric_value(&metrics, "oada_gateway_tokens_issued_total{client=\"software_statement\",grant_type=\"client_credentials\"}"),
        1.0
    );
}
