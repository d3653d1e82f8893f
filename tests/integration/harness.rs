//! Test harness: a real recording HTTP upstream, and the real gateway binary started on ephemeral
//! loopback ports with a generated config. Everything talks over real sockets.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use oada_gateway::keys::{generate, KeyRing, SigningKey};
use oada_gateway::scope::ScopeSet;
use oada_gateway::token::{AccessTokenClaims, TokenIssuer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A free loopback port (bound and released; the gateway binds it right after).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HashMap<String, Vec<String>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or(0, Vec::len)
    }
}

/// A real HTTP/1.1 upstream that records requests. `/slow?ms=N` answers after N ms.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            // connection tasks live in this set: aborting the upstream closes every connection
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let recorded = recorded.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let mut headers: HashMap<String, Vec<String>> = HashMap::new();
                            for (k, v) in req.headers() {
                                headers
                                    .entry(k.as_str().to_string())
                                    .or_default()
                                    .push(v.to_str().unwrap_or("").to_string());
                            }
                            let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            recorded.lock().unwrap().push(Seen {
                                method: req.method().to_string(),
                                path_and_query: path_and_query.clone(),
                                headers,
                            });
                            if req.uri().path() == "/slow" {
                                let ms: u64 = req
                                    .uri()
                                    .query()
                                    .and_then(|q| q.strip_prefix("ms="))
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(1000);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            let body = serde_json::json!({"upstream": addr.to_string(), "path": path_and_query});
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("Content-Type", "application/json")
                                    .body(Full::new(Bytes::from(body.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening and closes every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway binary running with a generated config.
pub struct Gateway {
    pub base: String,
    pub admin: String,
    pub issuer: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub keys: Arc<KeyRing>,
    child: Option<Child>,
    log_path: PathBuf,
}

pub const KID: &str = "test-key";

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

pub struct GatewayBuilder {
    alg: Algorithm,
    body: String,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// `body` is the config below the generated head (listen, admin_listen, issuer, signing_keys).
    pub fn new(body: &str) -> Self {
        GatewayBuilder {
            alg: Algorithm::ES256,
            body: body.to_string(),
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// A file placed next to the config before start.
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.into(), text.into()));
        self
    }

    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let pem = generate::private_key_pem(self.alg).unwrap();
        write(dir.path(), "keys/gw.pem", &pem);
        for (name, text) in &self.files {
            write(dir.path(), name, text);
        }
        let port = free_port();
        let admin_port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let alg = oada_gateway::keys::jwk::algorithm_name(self.alg);
        let config = format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\nissuer: {issuer}\nsigning_keys:\n  - kid: {KID}\n    alg: {alg}\n    private_key_file: keys/gw.pem\nserver:\n  threads: 2\n  grace_period: 5s\n  graceful_shutdown_timeout: 1s\n{}",
            self.body
        );
        let config_path = write(dir.path(), "gateway.yaml", &config);
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_oada-gateway"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the gateway binary");
        let keys = Arc::new(KeyRing::new(vec![
            SigningKey::from_pem(KID, self.alg, pem.as_bytes()).unwrap()
        ]));
        let mut gw = Gateway {
            base: issuer.clone(),
            admin: format!("http://127.0.0.1:{admin_port}"),
            issuer,
            dir,
            config_path,
            keys,
            child: Some(child),
            log_path,
        };
        gw.wait_until_up().await;
        gw
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Gateway {
    async fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = client();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the gateway exited early ({status}); log:\n{}", self.logs());
            }
            let admin_up = http.get(format!("{}/healthz", self.admin)).send().await.is_ok();
            let proxy_up = tokio::net::TcpStream::connect(self.base.trim_start_matches("http://")).await.is_ok();
            if admin_up && proxy_up {
                return;
            }
            if Instant::now() > deadline {
                panic!("the gateway did not come up; log:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn issuer_for_tests(&self) -> TokenIssuer {
        TokenIssuer::new(self.keys.clone(), &self.issuer, &self.issuer, Duration::from_secs(600))
    }

    /// A valid token for `client_id` with `scope`.
    pub fn token(&self, client_id: &str, scope: &str) -> String {
        self.issuer_for_tests()
            .issue(client_id, &ScopeSet::parse(scope).unwrap(), oada_gateway::ids::unix_now())
            .unwrap()
            .access_token
    }

    /// Claims of a valid token, to be altered by a test and signed with [`Gateway::sign`].
    pub fn claims(&self, scope: &str) -> AccessTokenClaims {
        let now = oada_gateway::ids::unix_now();
        AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: "client-1".into(),
            client_id: "client-1".into(),
            aud: self.issuer.clone(),
            scope: scope.into(),
            iat: now,
            exp: now + 600,
            jti: oada_gateway::ids::random_id(16),
        }
    }

    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        self.issuer_for_tests().sign(claims).unwrap()
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample, e.g. `oada_gateway_token_cache_hits_total` or
    /// `oada_gateway_auth_decisions_total{result="allowed"}` (labels in exposition order).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics().await, sample)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit; returns its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.logs());
        }
    }
}

/// Reads a sample's value from Prometheus text; 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(sample)?;
            let value = rest.strip_prefix(' ')?;
            value.trim().parse::<f64>().ok()
        })
        .unwrap_or(0.0)
}

/// Sends raw bytes to `addr` and returns the raw response (for paths a client would normalize).
pub async fn raw_request(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A real HTTP server of JSON documents by path (remote key sets, trusted lists), counting hits.
pub struct StaticJson {
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, String>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StaticJson {
    pub async fn start() -> StaticJson {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (d, h) = (d.clone(), h.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let doc = d.lock().unwrap().get(&path).cloned();
                        async move {
                            Ok::<_, Infallible>(match doc {
                                Some(body) => Response::builder()
                                    .header("Content-Type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                                None => Response::builder().status(404).body(Full::new(Bytes::new())).unwrap(),
                            })
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        StaticJson { addr, docs, hits, task }
    }

    pub fn set(&self, path: &str, doc: &serde_json::Value) {
        self.docs.lock().unwrap().insert(path.to_string(), doc.to_string());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for StaticJson {
    fn drop(&mut self) {
        self.task.abort();
    }
}
