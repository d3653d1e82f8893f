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
pub fn ensure_clients() {
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

#[tokio::test]
async fn python_authlib_runs_the_code_flow_with_pkce_private_key_jwt_and_refresh() {
    let f = crate::user_flow::flow().await;
    let key = write(f.gw.dir.path(), "fieldscout/key.pem", &f.partner.pem);
    let result = run_client(
        root().join("target/interop-venv/bin/python"),
        vec![
            root().join("tests/interop/authlib_code_flow.py").to_string_lossy().into(),
            f.gw.issuer.clone(),
            "fieldscout-web".into(),
            key.to_string_lossy().into(),
            "fs-1".into(),
            f.live_redirect.clone(),
            "frank".into(),
            crate::user_flow::PASSWORD.into(),
            f.gw.url("/stations"),
        ],
    )
    .await;
    assert_eq!(result["state_matches"], true, "{result}");
    assert_eq!(result["token_type"], "Bearer");
    assert_eq!(result["scope"], "weather.stations:read");
    assert_eq!(result["has_refresh_token"], true);
    assert_eq!(result["resource_status"], 200);
    assert_eq!(result["refreshed_rotated"], true);
    assert_eq!(result["refreshed_status"], 200);
    let seen = f.upstream.requests();
    assert!(seen.iter().all(|r| r.header("x-oada-user-id") == Some("frank")), "the API saw the person");
    let metrics = f.gw.metrics().await;
    assert_eq!(metric_value(&metrics, r#"oada_gateway_tokens_issued_total{client="fieldscout",grant_type="authorization_code"}"#), 1.0);
    assert_eq!(metric_value(&metrics, r#"oada_gateway_tokens_issued_total{client="fieldscout",grant_type="refresh_token"}"#), 1.0);
}

#[tokio::test]
async fn node_openid_client_runs_the_code_flow_as_a_public_client() {
    let f = crate::user_flow::flow().await;
    let result = run_client(
        PathBuf::from("node"),
        vec![
            root().join("tests/interop/node/openid_client_code_flow.mjs").to_string_lossy().into(),
            f.gw.issuer.clone(),
            "mobile-app".into(),
            f.live_redirect.clone(),
            "grace".into(),
            crate::user_flow::PASSWORD.into(),
            f.gw.url("/stations"),
        ],
    )
    .await;
    assert_eq!(result["token_type"].as_str().map(str::to_ascii_lowercase), Some("bearer".into()), "{result}");
    assert_eq!(result["scope"], "weather.stations:read");
    assert_eq!(result["resource_status"], 200);
    assert!(!result["reused_or_no_verifier_error"].is_null(), "a second exchange of the code is refused: {result}");
    assert_eq!(f.upstream.requests()[0].header("x-oada-user-id"), Some("grace"));
}
