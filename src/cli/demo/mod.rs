//! `oada-gateway demo`: the bundled `gateway.yaml` in front of the sample weather-station API,
//! walking through both halves of OADA over real HTTP, printing each exchange: moisturemapper (a
//! partner company) through the client grant ([`partner`]), then Frank (a farmer) letting the
//! FieldScout app read his stations through the authorization code flow ([`person`]).
//! `demo --serve` then keeps everything running, with the FieldScout demo app ([`app`]), so that
//! a person can try the flow in a browser.

mod app;
mod partner;
mod person;

use super::keygen::write_private;
use crate::config::Config;
use crate::keys::{generate, SigningKey};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GATEWAY_KEY: &str = "keys/gw-1.pem";
const PARTNER_DOC: &str = "clients/moisturemapper.json";
const PARTNER_KEY: &str = "clients/moisturemapper.key.pem";
const USERS_FILE: &str = "clients/users.yaml";
/// The demo people's password, kept beside the users file so that later runs know it.
const PASSWORD_FILE: &str = "clients/demo-password.txt";

type DemoResult<T> = Result<T, String>;

/// Creates the demo's keys and moisturemapper's registration document if they are missing.
/// Private keys are generated on this machine and never committed.
fn ensure_material(dir: &Path) -> DemoResult<()> {
    let gw = dir.join(GATEWAY_KEY);
    if !gw.exists() {
        let pem = generate::private_key_pem(Algorithm::ES256).map_err(|e| e.to_string())?;
        write_private(&gw, pem.as_bytes()).map_err(|e| format!("{}: {e}", gw.display()))?;
        println!("   created the gateway's signing key {GATEWAY_KEY} (ES256)");
    }
    let key_path = dir.join(PARTNER_KEY);
    let doc_path = dir.join(PARTNER_DOC);
    if !key_path.exists() || !doc_path.exists() {
        let pem = generate::private_key_pem(Algorithm::RS256).map_err(|e| e.to_string())?;
        let key = SigningKey::from_pem("moisturemapper-2026", Algorithm::RS256, pem.as_bytes()).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&key_path);
        write_private(&key_path, pem.as_bytes()).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let doc = json!({
            "client_name": "moisturemapper",
            "client_uri": "https://moisturemapper.example",
            "contacts": ["integrations@moisturemapper.example"],
            "software_id": "moisturemapper-soil-sync",
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "scope": "weather.observations:read weather.stations:read",
            "jwks": {"keys": [key.public.to_json()]}
        });
        std::fs::write(&doc_path, serde_json::to_string_pretty(&doc).unwrap())
            .map_err(|e| format!("{}: {e}", doc_path.display()))?;
        println!("   created moisturemapper's private key {PARTNER_KEY} and its registration document {PARTNER_DOC}");
    }
    let users = dir.join(USERS_FILE);
    let password_file = dir.join(PASSWORD_FILE);
    if !users.exists() || !password_file.exists() {
        let password = format!("corn-{}", crate::ids::random_id(6));
        let hash = crate::secrets::hash(&password);
        let text = format!(
            "# People who can sign in at the demo gateway (created by `oada-gateway demo`).\n\
             # password_hash: `oada-gateway hash-secret --password`\n\
             - {{username: frank, name: Frank Farmer, id: frank, password_hash: '{hash}'}}\n\
             - {{username: grace, name: Grace Grower, id: grace, password_hash: '{hash}'}}\n"
        );
        std::fs::write(&users, text).map_err(|e| format!("{}: {e}", users.display()))?;
        write_private(&password_file, password.as_bytes()).map_err(|e| format!("{}: {e}", password_file.display()))?;
        println!("   created the demo people frank and grace in {USERS_FILE} (password in {PASSWORD_FILE})");
    }
    Ok(())
}

fn demo_password(dir: &Path) -> DemoResult<String> {
    std::fs::read_to_string(dir.join(PASSWORD_FILE))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{PASSWORD_FILE}: {e}"))
}

pub(super) struct Walkthrough {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
}

pub(super) fn short(token: &str) -> String {
    format!("{}…{}", &token[..12.min(token.len())], &token[token.len().saturating_sub(6)..])
}

impl Walkthrough {
    pub(super) async fn send(&self, request: reqwest::RequestBuilder) -> DemoResult<(u16, reqwest::header::HeaderMap, Value)> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    pub(super) fn expect(&self, step: &str, status: u16, expected: u16, body: &Value) -> DemoResult<()> {
        if status == expected {
            Ok(())
        } else {
            Err(format!("{step}: expected {expected}, got {status}: {body}"))
        }
    }
}

fn wait_ready(http: &reqwest::Client, admin: &str, child: &mut Child, runtime: &tokio::runtime::Runtime) -> DemoResult<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the gateway exited ({status})"));
        }
        let ready = runtime.block_on(async { http.get(format!("{admin}/readyz")).send().await.map(|r| r.status().as_u16()) });
        if matches!(ready, Ok(200)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the gateway did not become ready within 15 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(config_path: &Path, serve: bool) -> i32 {
    println!("oada-gateway demo: grounddata's weather API behind OADA, for a partner company and for a farmer's app");
    let dir: PathBuf = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(e) = ensure_material(&dir) {
        eprintln!("demo: {e}");
        return 1;
    }
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return 1;
        }
    };
    let Some(api_addr) = config.upstreams.first().and_then(|u| u.servers.first()).copied() else {
        eprintln!("demo: the config has no upstream server for the sample API");
        return 1;
    };
    // the demo app's address is its registered redirect URI's
    let app_redirect = config
        .clients
        .iter()
        .find(|c| c.client_id.as_deref() == Some(person::APP_CLIENT_ID))
        .and_then(|c| c.redirect_uris.first().cloned());
    let app_addr = app_redirect
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.socket_addrs(|| None).ok())
        .and_then(|a| a.first().copied());
    let mut addresses = vec![("gateway", config.listen), ("admin", config.admin_listen), ("sample API", api_addr)];
    if let (true, Some(addr)) = (serve, app_addr) {
        addresses.push(("FieldScout demo app", addr));
    }
    for (what, addr) in addresses {
        if std::net::TcpListener::bind(addr).is_err() {
            eprintln!("demo: {addr} ({what}) is in use; free it, or set OADA_LISTEN / OADA_ADMIN_LISTEN / OADA_ISSUER for another port");
            return 1;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(api_addr)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot start the sample API on {api_addr}: {e}");
            return 1;
        }
    };
    runtime.spawn(crate::sample_api::serve(listener));
    println!("   sample weather-station API (grounddata's existing API) on http://{api_addr}");

    let log_path = std::env::temp_dir().join(format!("oada-gateway-demo-{}.log", std::process::id()));
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("demo: cannot create {}: {e}", log_path.display());
            return 1;
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("oada-gateway"));
    let mut child = match Command::new(exe)
        .arg("--config")
        .arg(config_path)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: cannot start the gateway: {e}");
            return 1;
        }
    };
    println!("   gateway on {} (admin {}), log in {}", config.issuer.as_str(), config.admin_listen, log_path.display());
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let admin = format!("http://{}", config.admin_listen);
    let walk = Walkthrough {
        http: http.clone(),
        base: config.issuer.as_str().to_string(),
    };
    let outcome = wait_ready(&http, &admin, &mut child, &runtime).and_then(|_| {
        runtime.block_on(walk.partner(&dir))?;
        match (&config.authorization, &app_redirect) {
            (Some(_), Some(redirect)) => runtime.block_on(walk.person(redirect, &demo_password(&dir)?)),
            _ => {
                println!("\n(no authorization section or no {} client in the config: the user-delegated half is skipped)", person::APP_CLIENT_ID);
                Ok(())
            }
        }
    });
    if serve && outcome.is_ok() {
        if let (Some(addr), Some(redirect)) = (app_addr, app_redirect.clone()) {
            match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
                Ok(listener) => {
                    runtime.spawn(app::serve(listener, config.issuer.as_str().to_string(), redirect));
                    let password = demo_password(&dir).unwrap_or_default();
                    println!("\nServing until Ctrl-C. Try the flow in a browser:");
                    println!("   1. open http://{addr}/ (FieldScout, the demo app) and click \"Sync my stations\"");
                    println!("   2. sign in at the gateway as frank (or grace), password {password}");
                    println!("   3. read the consent page, allow (or deny), and see your own stations back in the app");
                    println!("   gateway {}  admin {admin}/metrics  sample API http://{api_addr}", config.issuer.as_str());
                    let _ = runtime.block_on(tokio::signal::ctrl_c());
                }
                Err(e) => eprintln!("demo: cannot start the demo app on {addr}: {e}"),
            }
        }
    }
    // stop the gateway the way an operator would
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    match outcome {
        Ok(()) => {
            println!("\nDone. Metrics were at {admin}/metrics while the gateway ran; `oada-gateway demo --serve` keeps it running for a browser.");
            0
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}\ngateway log: {}", log_path.display());
            1
        }
    }
}
