//! The gateway's own signing keys rotate next → active → retired through `oada-gateway keys add`,
//! `keys rotate` and live reloads, across two replicas reloaded one after the other, while tokens
//! signed by the old key stay in use: no valid token is refused, and `/jwks` publishes a key
//! before any token it signs exists.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

const MM_SECRET: &str = "mm-secret-0123456789abcdef";
const BODY: &str = "clients:\n  - name: moisturemapper\n    client_id: mm-1\n    client_secret_env: MM_SECRET\n    scopes: [weather.observations:read]\nroutes:\n  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: weather\n";

fn body(upstream: &Upstream) -> String {
    format!("upstreams:\n  weather:\n    servers: [{}]\n{BODY}", upstream.addr)
}

/// Runs `oada-gateway keys ARGS` on `config`: whether it succeeded, and what it said.
fn try_keys_command(config: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(gateway_bin())
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("MM_SECRET", MM_SECRET)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `oada-gateway keys ARGS` on `config`; panics with its output unless it succeeds.
fn keys_command(config: &Path, args: &[&str]) -> String {
    let (ok, text) = try_keys_command(config, args);
    assert!(ok, "keys {args:?}: {text}");
    text
}

async fn token(gw: &Gateway) -> String {
    gw.client_credentials_token("mm-1", MM_SECRET, Some("weather.observations:read")).await
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn published_kids(gw: &Gateway) -> Vec<String> {
    let jwks: serde_json::Value = client().get(gw.url("/jwks")).send().await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

async fn status(gw: &Gateway, token: &str) -> u16 {
    client().get(gw.url("/observations")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn own_keys_rotate_through_live_reloads_without_refusing_a_valid_token() {
    let upstream = Upstream::start().await;
    let a = GatewayBuilder::new(&body(&upstream)).env("MM_SECRET", MM_SECRET).start().await;
    let b = GatewayBuilder::new(&body(&upstream))
        .replica_of(&a.key_pem, &a.issuer)
        .env("MM_SECRET", MM_SECRET)
        .start()
        .await;
    let old_token = token(&a).await;
    let old_kid = kid_of(&old_token);
    assert_eq!(published_kids(&a).await, [old_kid.clone()]);
    let load_a = Load::start_raw(a.addr(), "/observations", Some(old_token.clone()), 4);
    let load_b = Load::start_raw(b.addr(), "/observations", Some(old_token.clone()), 4);

    // 1. `keys add` on replica A's file; B gets the same key and lines (as a config rollout would)
    let said = keys_command(&a.config_path, &["add", "--kid", "gw-next", "--alg", "EdDSA"]);
    assert!(said.contains("next key"), "{said}");
    let key_file = "keys/gw-next.pem";
    std::fs::copy(a.dir.path().join(key_file), b.dir.path().join(key_file)).unwrap();
    let added = "  - kid: gw-next\n    alg: EdDSA\n    private_key_file: keys/gw-next.pem\n    status: next\n";
    assert!(a.config_text().contains(added), "{}", a.config_text());
    b.write_config(&b.config_text().replace("    private_key_file: keys/gw.pem\n", &format!("    private_key_file: keys/gw.pem\n{added}")));
    a.reload_ok("next key added at A").await;
    b.reload_ok("next key added at B").await;
    for gw in [&a, &b] {
        assert_eq!(published_kids(gw).await, [old_kid.clone(), "gw-next".to_string()], "next is published");
        assert_eq!(kid_of(&token(gw).await), old_kid, "but does not sign yet");
    }
    let metrics = a.metrics().await;
    let age = metric_value(&metrics, "oada_gateway_signing_key_age_seconds{kid=\"gw-next\",status=\"next\"}");
    assert!((0.0..60.0).contains(&age), "the new key's age: {age}\n{metrics}");

    // 2. `keys rotate` at A and a reload of A only: A signs with the new key, which B (still
    // treating it as next) already accepts; A still accepts the old key's tokens
    let said = keys_command(&a.config_path, &["rotate"]);
    assert!(said.contains("`gw-next` is now active") && said.contains("retired at"), "{said}");
    a.reload_ok("rotated at A").await;
    let new_token = token(&a).await;
    assert_eq!(kid_of(&new_token), "gw-next");
    assert_eq!(status(&b, &new_token).await, 200, "a replica not yet reloaded accepts the new key's tokens");
    assert_eq!(status(&a, &old_token).await, 200, "the retired key still verifies");
    assert_eq!(published_kids(&a).await, [old_kid.clone(), "gw-next".to_string()], "retired: published while its tokens live");
    let metrics = a.metrics().await;
    assert!(metrics.contains(&format!("oada_gateway_signing_key_age_seconds{{kid=\"{old_kid}\",status=\"retired\"}}")), "{metrics}");
    assert!(metrics.contains("oada_gateway_signing_key_age_seconds{kid=\"gw-next\",status=\"active\"}"), "{metrics}");
    let load_new = Load::start_raw(b.addr(), "/observations", Some(new_token.clone()), 2);

    // 3. B takes the same file (its own listeners kept) and reloads
    let rotated_keys = signing_keys_block(&a.config_text());
    b.write_config(&b.config_text().replace(&signing_keys_block(&b.config_text()), &rotated_keys));
    b.reload_ok("rotated at B").await;
    assert_eq!(kid_of(&token(&b).await), "gw-next");

    // 4. once the retired key's tokens would all have expired it is no longer published, but
    // still verifies (here: its retirement moved two hours back instead of waiting an hour)
    let retired_line = a.config_text().lines().find(|l| l.trim_start().starts_with("retired_at:")).unwrap().to_string();
    let long_ago = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(7200)).to_string();
    a.write_config(&a.config_text().replace(&retired_line, &format!("    retired_at: {long_ago}")));
    a.reload_ok("retired long ago").await;
    assert_eq!(published_kids(&a).await, ["gw-next".to_string()]);
    assert_eq!(status(&a, &old_token).await, 200, "an unpublished retired key still verifies");
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (what, load) in [("old token at A", load_a), ("old token at B", load_b), ("new token at B", load_new)] {
        let result = load.stop().await;
        eprintln!("{what}: {} requests, {} failed", result.ok, result.failures.len());
        assert!(result.failures.is_empty(), "{what}: {:?}", &result.failures[..result.failures.len().min(5)]);
        assert!(result.ok > 50, "{what}: the load ran ({} requests)", result.ok);
    }
}

/// The `signing_keys:` lines of a config file.
fn signing_keys_block(text: &str) -> String {
    let start = text.find("signing_keys:\n").unwrap();
    let rest = &text[start..];
    let end = rest[1..].find("\nserver:").map_or(rest.len(), |i| i + 2);
    rest[..end].to_string()
}

#[tokio::test]
async fn a_ring_without_exactly_one_active_key_or_a_retired_key_without_its_time_is_refused() {
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&body(&upstream)).env("MM_SECRET", MM_SECRET).start().await;
    let good = gw.config_text();
    let (ok, said) = try_keys_command(&gw.config_path, &["rotate"]);
    assert!(!ok && said.contains("no key is `next`"), "{said}");
    keys_command(&gw.config_path, &["add", "--kid", "gw-2"]);
    let (ok, said) = try_keys_command(&gw.config_path, &["add", "--kid", "gw-3"]);
    assert!(!ok && said.contains("`gw-2` is already the next key"), "{said}");
    let (ok, said) = try_keys_command(&gw.config_path, &["add", "--kid", "gw/../x"]);
    assert!(!ok && said.contains("--kid"), "{said}");
    // a file the editor cannot place its lines in is left as it was
    let flow = good.replace(
        "signing_keys:\n  - kid: test-key\n    alg: ES256\n    private_key_file: keys/gw.pem\n",
        "signing_keys: [{kid: test-key, alg: ES256, private_key_file: keys/gw.pem}]\n",
    );
    assert_ne!(flow, good, "the head has the expected layout");
    gw.write_config(&flow);
    let (ok, said) = try_keys_command(&gw.config_path, &["add", "--kid", "gw-4"]);
    assert!(!ok && said.contains("block-style"), "{said}");
    assert_eq!(gw.config_text(), flow);
    assert!(!gw.dir.path().join("keys/gw-4.pem").exists(), "no key file left behind");
    for (lines, expected) in [
        ("    status: retired\n", "retired key needs the time it stopped signing"),
        ("    status: next\n", "no key is `status: active`"),
        ("    status: signing\n", "is not a key status"),
        ("    status: active\n    retired_at: 2026-11-24T10:00:00Z\n", "only a `status: retired` key"),
        ("    status: retired\n    retired_at: yesterday\n", "not an RFC 3339 time"),
    ] {
        gw.write_config(&good.replace("    private_key_file: keys/gw.pem\n", &format!("    private_key_file: keys/gw.pem\n{lines}")));
        let (code, answer) = gw.reload().await;
        assert_eq!(code, 400, "{lines}: {answer}");
        assert!(answer.to_string().contains(expected), "{lines}: {answer}");
    }
    gw.write_config(&good.replace(
        "    private_key_file: keys/gw.pem\n",
        "    private_key_file: keys/gw.pem\n    status: active\n  - kid: again\n    alg: ES256\n    private_key_file: keys/gw.pem\n    status: active\n",
    ));
    let (code, answer) = gw.reload().await;
    assert_eq!(code, 400);
    assert!(answer.to_string().contains("signing_keys[0] is already `active`"), "{answer}");
}
