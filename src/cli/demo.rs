//! `oada-gateway demo`: the bundled `gateway.yaml` in front of the sample weather-station API,
//! walking moisturemapper through the OADA client grant (key, registration, token, data, refusals)
//! over real HTTP, printing each exchange.

use super::keygen::write_private;
use crate::config::Config;
use crate::keys::{generate, SigningKey};
use crate::partner::PartnerKey;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GATEWAY_KEY: &str = "keys/gw-1.pem";
const PARTNER_DOC: &str = "clients/moisturemapper.json";
const PARTNER_KEY: &str = "clients/moisturemapper.key.pem";

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
    Ok(())
}

struct Walkthrough {
    http: reqwest::Client,
    base: String,
}

fn short(token: &str) -> String {
    format!("{}…{}", &token[..12.min(token.len())], &token[token.len().saturating_sub(6)..])
}

impl Walkthrough {
    async fn send(&self, request: reqwest::RequestBuilder) -> DemoResult<(u16, reqwest::header::HeaderMap, Value)> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    fn expect(&self, step: &str, status: u16, expected: u16, body: &Value) -> DemoResult<()> {
        if status == expected {
            Ok(())
        } else {
            Err(format!("{step}: expected {expected}, got {status}: {body}"))
        }
    }

    async fn run(&self, dir: &Path) -> DemoResult<()> {
        let base = &self.base;
        println!("\n1. Discovery: GET {base}/.well-known/oada-configuration");
        let (status, _, config) = self.send(self.http.get(format!("{base}/.well-known/oada-configuration"))).await?;
        self.expect("discovery", status, 200, &config)?;
        let token_endpoint = config["token_endpoint"].as_str().unwrap_or_default().to_string();
        let registration_endpoint = config["registration_endpoint"].as_str().unwrap_or_default().to_string();
        println!("   ← 200 token_endpoint={token_endpoint}\n         registration_endpoint={registration_endpoint}");

        let doc_text = std::fs::read_to_string(dir.join(PARTNER_DOC)).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&doc_text).map_err(|e| e.to_string())?;
        let pem = std::fs::read(dir.join(PARTNER_KEY)).map_err(|e| e.to_string())?;
        let key = PartnerKey::from_pem(&pem)
            .and_then(|k| k.with_kid_from(&doc))
            .map_err(|e| e.to_string())?;

        println!("\n2. Registration: POST {registration_endpoint}");
        println!("   → moisturemapper's client registration document (the one grounddata stored in advance; key {})", key.kid.as_deref().unwrap_or("-"));
        let (status, _, registration) = self.send(self.http.post(&registration_endpoint).json(&doc)).await?;
        self.expect("registration", status, 201, &registration)?;
        let client_id = registration["client_id"].as_str().unwrap_or_default().to_string();
        println!(
            "   ← 201 client_id={client_id} (temporary, expires at {}), scope \"{}\"",
            registration["client_id_expires_at"], registration["scope"].as_str().unwrap_or("")
        );

        println!("\n3. Token: POST {token_endpoint}");
        let assertion = key.assertion(&client_id, &token_endpoint, crate::ids::unix_now());
        println!("   → grant_type=client_credentials, client_assertion=<JWT {} signed with moisturemapper's private key: iss=sub={client_id}, aud=token endpoint, fresh jti>", short(&assertion));
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", crate::oauth::client_auth::ASSERTION_TYPE_JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("scope", "weather.observations:read"),
        ];
        let (status, _, token) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("token", status, 200, &token)?;
        let access_token = token["access_token"].as_str().unwrap_or_default().to_string();
        println!(
            "   ← 200 {} token {}, expires_in={}, scope \"{}\"",
            token["token_type"].as_str().unwrap_or(""),
            short(&access_token),
            token["expires_in"],
            token["scope"].as_str().unwrap_or("")
        );

        println!("\n4. Data: GET {base}/observations with Authorization: Bearer {}", short(&access_token));
        let (status, _, data) = self.send(self.http.get(format!("{base}/observations")).bearer_auth(&access_token)).await?;
        self.expect("data", status, 200, &data)?;
        let observations = data["observations"].as_array().cloned().unwrap_or_default();
        println!("   ← 200 {} observations; the API saw the caller as {}", observations.len(), data["requested_by"]);
        if let Some(first) = observations.first() {
            println!("     e.g. {first}");
        }

        println!("\n5. Refused: GET {base}/observations without a token");
        let (status, headers, body) = self.send(self.http.get(format!("{base}/observations"))).await?;
        self.expect("no token", status, 401, &body)?;
        println!(
            "   ← 401 WWW-Authenticate: {}",
            headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("")
        );

        println!("\n6. Refused: POST {base}/observations with the read-only token");
        let (status, headers, body) = self
            .send(self.http.post(format!("{base}/observations")).bearer_auth(&access_token).json(&json!({"station": "ames-1", "rainfall_mm": 3.2})))
            .await?;
        self.expect("write with a read token", status, 403, &body)?;
        println!(
            "   ← 403 WWW-Authenticate: {}",
            headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("")
        );

        println!("\n7. Refused: the same client assertion sent again (replay)");
        let (status, _, body) = self.send(self.http.post(&token_endpoint).form(&form)).await?;
        self.expect("replay", status, 400, &body)?;
        println!("   ← 400 {}: {}", body["error"].as_str().unwrap_or(""), body["error_description"].as_str().unwrap_or(""));
        Ok(())
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

pub fn run(config_path: &Path) -> i32 {
    println!("oada-gateway demo: moisturemapper gets grounddata's weather data through the OADA client grant");
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
    for (what, addr) in [("gateway", config.listen), ("admin", config.admin_listen), ("sample API", api_addr)] {
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
    let outcome = wait_ready(&http, &admin, &mut child, &runtime).and_then(|_| {
        let walk = Walkthrough {
            http: http.clone(),
            base: config.issuer.as_str().to_string(),
        };
        runtime.block_on(walk.run(&dir))
    });
    // stop the gateway the way an operator would
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    match outcome {
        Ok(()) => {
            println!("\nDone: one allowed request, three refused ones. Metrics: {admin}/metrics while the gateway runs.");
            0
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}\ngateway log: {}", log_path.display());
            1
        }
    }
}
