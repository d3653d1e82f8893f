//! A person in a real browser: headless Chromium driven by Selenium (tests/interop/browser_flow.py)
//! through the gateway's sign-in and consent pages, to the client's redirect URI.

use crate::user_flow::{flow, pkce_pair, PASSWORD};
use serde_json::Value;
use std::path::PathBuf;

fn chromium_available() -> bool {
    ["/usr/bin/chromium", "/usr/bin/chromedriver"].iter().all(|p| std::path::Path::new(p).exists())
}

async fn run_browser(authorization_url: String, port: u16, decision: &str) -> Value {
    assert!(
        chromium_available(),
        "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate::interop::ensure_clients();
    let decision = decision.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(root.join("target/interop-venv/bin/python"))
            .arg(root.join("tests/interop/browser_flow.py"))
            .args([authorization_url, port.to_string(), "frank".into(), PASSWORD.into(), decision])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[tokio::test]
async fn a_person_signs_in_and_approves_in_chromium() {
    let f = flow().await;
    let (_, challenge) = pkce_pair();
    let url = f.authorize_url(
        &f.discovered_id,
        &[("response_type", "code"), ("redirect_uri", &f.live_redirect), ("scope", "weather.stations:read"), ("state", "chromium-state"), ("code_challenge", &challenge), ("code_challenge_method", "S256")],
    );
    let result = run_browser(url, f.live_port, "approve").await;
    assert_eq!(result["consent_client_name"], "Field Scout", "{result}");
    assert!(result["consent_trust"].as_str().unwrap().contains("client discovery provider"), "{result}");
    assert_eq!(result["consent_puc"], "https://fieldscout.example/privacy_and_use_components.html");
    assert_eq!(result["consent_scopes"][0], "See your weather stations and where they are");
    assert_eq!(result["landed_path"], "/callback", "the browser got back to the client: {result}");
    assert_eq!(result["landed"]["state"], "chromium-state");
    assert!(result["landed"]["code"].as_str().is_some_and(|c| c.len() >= 43));
    assert_eq!(result["landed"]["iss"], f.gw.issuer.as_str());
}

#[tokio::test]
async fn a_person_denies_in_chromium() {
    let f = flow().await;
    let (_, challenge) = pkce_pair();
    let url = f.authorize_url(
        "fieldscout-web",
        &[("response_type", "code"), ("redirect_uri", &f.live_redirect), ("state", "no-thanks"), ("code_challenge", &challenge), ("code_challenge_method", "S256")],
    );
    let result = run_browser(url, f.live_port, "deny").await;
    assert_eq!(result["consent_client_name"], "Field Scout Web", "{result}");
    assert_eq!(result["landed"]["error"], "access_denied", "{result}");
    assert_eq!(result["landed"]["state"], "no-thanks");
    assert!(result["landed"].get("code").is_none());
}
