//! `oada-gateway token`: a partner registers its document and gets an access token, from a shell.

use crate::partner::{Partner, PartnerKey};
use std::path::Path;

pub fn run(issuer: &str, key: &Path, registration: &Path, scope: Option<&str>) -> i32 {
    let fail = |e: String| {
        eprintln!("token: {e}");
        1
    };
    let doc: serde_json::Value = match std::fs::read_to_string(registration)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => return fail(format!("{}: {e}", registration.display())),
    };
    let pem = match std::fs::read(key) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", key.display())),
    };
    let key = match PartnerKey::from_pem(&pem).and_then(|k| k.with_kid_from(&doc)) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    let partner = Partner::new(issuer, key, doc);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(partner.obtain_token(scope)) {
        Ok(t) => {
            eprintln!(
                "registered as client_id {}; token valid for {} s with scope \"{}\" ({})",
                t.client_id,
                t.expires_in,
                t.scope,
                partner.key_description()
            );
            println!("{}", t.access_token);
            0
        }
        Err(e) => fail(e.to_string()),
    }
}
