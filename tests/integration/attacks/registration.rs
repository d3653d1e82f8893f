//! Floods and malformed input at the hosted endpoints: a partner's public registration document
//! posted over and over, JSON with duplicate members, forms with thousands of names, access tokens
//! with critical header parameters.

use crate::harness::*;
use crate::oauth::world;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Sends `count` copies of `request`, pipelined in batches on one connection at a time (the
/// gateway closes a connection after `server.keepalive_requests`; the rest goes on a new one), and
/// returns how many responses had each status.
async fn pipeline(addr: &str, source: &str, request: &[u8], count: usize) -> std::collections::BTreeMap<u16, usize> {
    let mut conn = RawConn::connect_from(addr, source).await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut answered = 0;
    let mut reconnects = 0;
    while answered < count {
        let batch = (count - answered).min(200);
        let bytes: Vec<u8> = std::iter::repeat_n(request, batch).flatten().copied().collect();
        let mut got = 0;
        if conn.send(&bytes).await.is_ok() {
            while got < batch {
                match conn.read_response(Duration::from_secs(30)).await {
                    Some(r) => {
                        *statuses.entry(status_of(&r)).or_default() += 1;
                        got += 1;
                    }
                    None => break,
                }
            }
        }
        answered += got;
        if got < batch {
            reconnects += 1;
            assert!(reconnects < 1000, "the gateway keeps closing: {statuses:?}");
            conn = RawConn::connect_from(addr, source).await;
        }
    }
    statuses
}

fn register_request(host: &str, doc: &Value) -> Vec<u8> {
    let body = doc.to_string();
    format!(
        "POST /register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn get_token(w: &crate::oauth::World, client_id: &str) -> (u16, Value) {
    let (status, _, body) = w.client_credentials(&w.sign(&w.claims(client_id)), None).await;
    (status, body)
}

/// 100,000 registrations of the partner's (public) document while the partner works: every
/// `201` names a working `client_id`, and the partner's earlier and new ids keep working.
#[tokio::test]
async fn a_registration_flood_cannot_lock_a_partner_out() {
    let w = crate::oauth::world_configured("limits:\n  register: {rate: unlimited}\n").await;
    let before = w.registered_client().await;
    let request = register_request(&w.gw.addr(), &w.partner.doc);
    let started = Instant::now();
    let flood = {
        let addr = w.gw.addr();
        let request = request.clone();
        tokio::spawn(async move {
            let per_connection = 100_000 / 8;
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let (addr, request) = (addr.clone(), request.clone());
                    tokio::spawn(async move { pipeline(&addr, &format!("127.0.1.{}", i + 1), &request, per_connection).await })
                })
                .collect();
            let mut total = std::collections::BTreeMap::new();
            for t in tasks {
                for (status, n) in t.await.unwrap() {
                    *total.entry(status).or_insert(0) += n;
                }
            }
            total
        })
    };
    // the partner registers and gets tokens while the flood runs
    let mut during = 0;
    while !flood.is_finished() {
        let id = w.registered_client().await;
        let (status, body) = get_token(&w, &id).await;
        assert_eq!(status, 200, "a fresh registration during the flood got no token: {body}");
        during += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let statuses = flood.await.unwrap();
    eprintln!("flood: {statuses:?} in {:?}; the partner registered and got a token {during} times meanwhile", started.elapsed());
    assert_eq!(statuses.get(&201), Some(&100_000), "every flooded registration was answered 201: {statuses:?}");
    assert!(during >= 1);
    let (status, body) = get_token(&w, &before).await;
    assert_eq!(status, 200, "the id registered before the flood still works: {body}");
    let after = w.registered_client().await;
    assert_eq!(get_token(&w, &after).await.0, 200);
}

/// With the default per-address limit, a flooding address gets 429 with Retry-After while the
/// partner, from another address, registers as usual.
#[tokio::test]
async fn registration_is_rate_limited_per_address() {
    let w = world().await;
    let request = register_request(&w.gw.addr(), &w.partner.doc);
    let statuses = pipeline(&w.gw.addr(), "127.0.0.2", &request, 2_000).await;
    assert_eq!(statuses.values().sum::<usize>(), 2_000, "{statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 1_900, "the flooding address is limited: {statuses:?}");
    let mut conn = RawConn::connect_from(&w.gw.addr(), "127.0.0.2").await;
    conn.send(&request).await.unwrap();
    let refused = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status_of(&refused), 429);
    let lower = refused.to_ascii_lowercase();
    for header in ["retry-after:", "ratelimit-policy:", "ratelimit:"] {
        assert!(lower.contains(header), "{header} missing: {refused}");
    }
    assert!(refused.contains("\"error\""));
    // the partner's own address is unaffected
    let id = w.registered_client().await;
    assert_eq!(get_token(&w, &id).await.0, 200);
    assert!(w.gw.metric(r#"oada_gateway_rate_limited_total{partner="-",rule="register"}"#).await >= 1_900.0);
}

#[tokio::test]
async fn registration_json_with_duplicate_members_is_refused() {
    let w = world().await;
    let doc = w.partner.doc.to_string();
    // the same document with a second `jwks` member appended: which one would win?
    let doubled = format!("{},\"jwks\":{{\"keys\":[]}}}}", doc.trim_end_matches('}'));
    let r = client()
        .post(w.gw.url("/register"))
        .header("Content-Type", "application/json")
        .body(doubled)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata");
    assert!(body["error_description"].as_str().unwrap().contains("twice"), "{body}");
}

#[tokio::test]
async fn a_token_request_with_thousands_of_form_names_is_answered() {
    let w = world().await;
    let id = w.registered_client().await;
    let assertion = w.sign(&w.claims(&id));
    // 11,000 distinct short names (one to three of 62 characters)
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let name = |mut i: usize| {
        let mut n = vec![ALPHABET[i % 62]];
        i /= 62;
        while i > 0 {
            n.push(ALPHABET[(i - 1) % 62]);
            i = (i - 1) / 62;
        }
        String::from_utf8(n).unwrap()
    };
    let mut body: String = (0..11_000).map(|i| format!("{}=1&", name(i))).collect();
    body.push_str(&format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        crate::oauth::ASSERTION_TYPE
    ));
    assert!(body.len() < 64 * 1024);
    let r = client()
        .post(w.token_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn access_tokens_with_critical_header_parameters_are_refused() {
    let w = world().await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(KID.into());
    header.typ = Some("at+jwt".into());
    header.crit = Some(vec!["x-gateway-ignores-this".into()]);
    let claims = w.gw.claims("weather.observations:read");
    let token = jsonwebtoken::encode(&header, &claims, &w.gw.keys.signer().encoding).unwrap();
    let r = client().get(w.gw.url("/observations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert!(w.upstream.requests().is_empty());
    // the same claims without `crit` pass
    let ok = w.gw.sign(&claims);
    assert_eq!(client().get(w.gw.url("/observations")).bearer_auth(&ok).send().await.unwrap().status(), 200);
}
