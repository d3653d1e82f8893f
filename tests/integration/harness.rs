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

/// What the upstream saw of one request, read from the raw bytes it received: the request line's
/// target and the header fields exactly as sent (names lower-cased for lookups), not what an HTTP
/// library parsed and normalized from them.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request-target as written on the request line.
    pub path_and_query: String,
    pub headers: HashMap<String, Vec<String>>,
    /// The request line and header section as received, up to and including the blank line.
    pub raw_head: String,
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

    /// The request line as received (`GET /x HTTP/1.1`).
    pub fn request_line(&self) -> &str {
        self.raw_head.split("\r\n").next().unwrap_or_default()
    }
}

/// The bytes a connection of the recording upstream has received, and how far its requests have
/// been taken from them.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    /// Start of the next request's head.
    next: usize,
}

impl Received {
    /// The next request head (request line and fields, with its blank line) and where it ends.
    fn next_head(&mut self) -> Option<(String, usize)> {
        let mut start = self.next;
        while self.bytes.get(start).is_some_and(|b| *b == b'\r' || *b == b'\n') {
            start += 1;
        }
        let end = find(&self.bytes[start..], b"\r\n\r\n")? + start + 4;
        Some((String::from_utf8_lossy(&self.bytes[start..end]).into_owned(), end))
    }

    /// Skips a chunked body starting at `at`; where it ends (after the trailer section).
    fn chunked_end(&self, mut at: usize) -> usize {
        loop {
            let Some(line_end) = find(&self.bytes[at..], b"\r\n").map(|i| i + at) else { return self.bytes.len() };
            let size_text = String::from_utf8_lossy(&self.bytes[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            at = line_end + 2;
            if size == 0 {
                // trailer fields, then a blank line
                loop {
                    let Some(e) = find(&self.bytes[at..], b"\r\n").map(|i| i + at) else { return self.bytes.len() };
                    let blank = e == at;
                    at = e + 2;
                    if blank {
                        return at;
                    }
                }
            }
            at += size + 2;
        }
    }
}

/// A client connection of the recording upstream: every byte read is kept in [`Received`].
struct RecordingIo {
    stream: tokio::net::TcpStream,
    received: Arc<Mutex<Received>>,
}

impl tokio::io::AsyncRead for RecordingIo {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.stream).poll_read(cx, buf);
        if poll.is_ready() {
            this.received.lock().unwrap().bytes.extend_from_slice(&buf.filled()[before..]);
        }
        poll
    }
}

impl tokio::io::AsyncWrite for RecordingIo {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads a raw request head into a [`Seen`].
fn seen_of(raw_head: String) -> Seen {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut fields);
    let _ = parsed.parse(raw_head.as_bytes());
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for h in parsed.headers.iter().filter(|h| !h.name.is_empty()) {
        headers
            .entry(h.name.to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(h.value).into_owned());
    }
    Seen {
        method: parsed.method.unwrap_or_default().to_string(),
        path_and_query: parsed.path.unwrap_or_default().to_string(),
        headers,
        raw_head,
    }
}

/// A real HTTP/1.1 upstream that records the raw requests it receives. `/slow?ms=N` answers after
/// N ms.
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
        use http_body_util::BodyExt;
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
                let received: Arc<Mutex<Received>> = Arc::default();
                let io = RecordingIo { stream, received: received.clone() };
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (recorded, received) = (recorded.clone(), received.clone());
                        async move {
                            // the head has been read whole before hyper hands the request over
                            let head = received.lock().unwrap().next_head();
                            let chunked = req
                                .headers()
                                .get("transfer-encoding")
                                .is_some_and(|v| v.to_str().unwrap_or("").to_ascii_lowercase().contains("chunked"));
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().map(str::to_string);
                            let body_len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                            let Some((raw_head, head_end)) = head else {
                                return Ok::<_, Infallible>(Response::builder().status(500).body(Full::new(Bytes::from("no raw head"))).unwrap());
                            };
                            {
                                let mut r = received.lock().unwrap();
                                r.next = if chunked { r.chunked_end(head_end) } else { head_end + body_len };
                            }
                            let seen = seen_of(raw_head);
                            let path_and_query = seen.path_and_query.clone();
                            recorded.lock().unwrap().push(seen);
                            if path == "/slow" {
                                let ms: u64 = query
                                    .as_deref()
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
                        .serve_connection(TokioIo::new(io), service)
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
    /// The signing key (PEM), for replicas.
    pub key_pem: String,
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
    /// A signing key shared with other replicas (PEM), instead of a new one.
    key_pem: Option<String>,
    /// An issuer shared with other replicas, instead of this gateway's own address.
    issuer: Option<String>,
    body: String,
    server: String,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

/// The gateway binary under test: `OADA_GATEWAY_BIN` when set (to run this suite against another
/// build, e.g. to show a finding on the release before its fix), else this crate's.
pub fn gateway_bin() -> PathBuf {
    std::env::var_os("OADA_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oada-gateway")))
}

impl GatewayBuilder {
    /// `body` is the config below the generated head (listen, admin_listen, issuer, signing_keys).
    pub fn new(body: &str) -> Self {
        GatewayBuilder {
            alg: Algorithm::ES256,
            key_pem: None,
            issuer: None,
            body: body.to_string(),
            server: String::new(),
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// A replica: the signing key (PEM) and issuer the other replicas use.
    pub fn replica_of(mut self, key_pem: &str, issuer: &str) -> Self {
        self.key_pem = Some(key_pem.to_string());
        self.issuer = Some(issuer.to_string());
        self
    }

    /// Extra `server:` settings, one `key: value` per line.
    pub fn server(mut self, lines: &str) -> Self {
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            self.server.push_str("  ");
            self.server.push_str(line.trim());
            self.server.push('\n');
        }
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
        let pem = self.key_pem.clone().unwrap_or_else(|| generate::private_key_pem(self.alg).unwrap());
        write(dir.path(), "keys/gw.pem", &pem);
        for (name, text) in &self.files {
            write(dir.path(), name, text);
        }
        let port = free_port();
        let admin_port = free_port();
        let own = format!("http://127.0.0.1:{port}");
        let issuer = self.issuer.clone().unwrap_or_else(|| own.clone());
        let alg = oada_gateway::keys::jwk::algorithm_name(self.alg);
        let config = format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\nissuer: {issuer}\nsigning_keys:\n  - kid: {KID}\n    alg: {alg}\n    private_key_file: keys/gw.pem\nserver:\n  threads: 2\n  grace_period: 5s\n  graceful_shutdown_timeout: 1s\n{}{}",
            self.server, self.body
        );
        let config_path = write(dir.path(), "gateway.yaml", &config);
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(gateway_bin())
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
            base: own,
            key_pem: pem.clone(),
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
                self.wait_for_store().await;
                return;
            }
            if Instant::now() > deadline {
                panic!("the gateway did not come up; log:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// With `store: redis` the revocation mirror loads after start (until then the gateway
    /// fails closed on its own tokens): give it up to 10 s, and go on either way, since some
    /// tests start without a reachable store on purpose.
    async fn wait_for_store(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ready: Option<serde_json::Value> = match client().get(format!("{}/readyz", self.admin)).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if ready.is_some_and(|r| r["store"]["status"] == "ok") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Resident memory of the gateway process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// `host:port` of the proxy listener.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
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
            auth_time: None,
            grant_id: None,
            partner: None,
            software_id: None,
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
        self.signal("TERM");
    }

    /// Sends a signal by name (`HUP`, `QUIT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap();
    }

    /// The config file as it is now.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap()
    }

    /// An access token from `/token` by the client credentials grant, authenticated with a
    /// client secret (`scope`: `None` asks for everything the client may have).
    pub async fn client_credentials_token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.map(|s| ("scope", s)));
        let r = client()
            .post(self.url("/token"))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let v: serde_json::Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// `/token` by the client credentials grant with a JWT client assertion: the status and the
    /// JSON answer (`Null` when it is not JSON).
    pub async fn token_by_assertion(&self, assertion: &str) -> (u16, serde_json::Value) {
        let r = client()
            .post(self.url("/token"))
            .form(&[("grant_type", "client_credentials"), ("client_assertion_type", crate::oauth::ASSERTION_TYPE), ("client_assertion", assertion)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST /reload`, which must succeed (`what` names the step in a failure): the JSON answer.
    pub async fn reload_ok(&self, what: &str) -> serde_json::Value {
        let (code, answer) = self.reload().await;
        assert_eq!(code, 200, "{what}: {answer}");
        assert_eq!(answer["status"], "reloaded", "{what}: {answer}");
        answer
    }

    /// Replaces the config file (not reloaded until asked).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// `POST /reload` on the admin listener: the status and the JSON answer.
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = client().post(format!("{}/reload", self.admin)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The hash of the config in force, from `/readyz`.
    pub async fn config_hash(&self) -> String {
        let r: serde_json::Value = client().get(format!("{}/readyz", self.admin)).send().await.unwrap().json().await.unwrap();
        r["config"].as_str().unwrap_or_default().to_string()
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

/// Config of one upstream at `addr` (no health checks) behind one open route `/`.
pub fn open_route(addr: SocketAddr) -> String {
    format!(
        "upstreams:\n  api:\n    servers: [{addr}]\n    health_check: {{type: none}}\nroutes:\n  - path: /\n    auth: none\n    upstream: api\n"
    )
}

/// Polls `check` every 50 ms until it holds, for at most `within`.
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw TCP connection to the gateway, for what HTTP clients would not send.
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    /// Bytes read past the last response returned.
    pending: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: &str) -> RawConn {
        RawConn {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
            pending: Vec::new(),
        }
    }

    /// Connects from a chosen loopback source address (127.0.0.0/8 is all local on Linux), so that
    /// tests can act as several clients.
    pub async fn connect_from(addr: &str, source: &str) -> RawConn {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        RawConn {
            stream: socket.connect(addr.parse().unwrap()).await.unwrap(),
            pending: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    /// Reads until the peer closes or `within` passes; returns what arrived and whether the
    /// connection was closed.
    pub async fn read_until_closed(&mut self, within: Duration) -> (String, bool) {
        use tokio::io::AsyncReadExt;
        let mut out = std::mem::take(&mut self.pending);
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            }
        }
    }

    /// Reads one HTTP/1.1 response with a Content-Length body (or none), within `within`.
    pub async fn read_response(&mut self, within: Duration) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 8192];
        loop {
            let out = &mut self.pending;
            if let Some(end) = find(out, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let status_line = head.lines().next().unwrap_or("").to_string();
                // a 1xx head is a response of its own, without a body
                let informational = status_line.split(' ').nth(1).is_some_and(|s| s.starts_with('1'));
                let length = if informational {
                    0
                } else {
                    head.lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0)
                };
                if out.len() >= end + 4 + length {
                    let response: Vec<u8> = out.drain(..end + 4 + length).collect();
                    return Some(String::from_utf8_lossy(&response).into_owned());
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                    let rest = std::mem::take(&mut self.pending);
                    return if rest.is_empty() { None } else { Some(String::from_utf8_lossy(&rest).into_owned()) };
                }
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status code of a raw HTTP response (0 when there is none).
pub fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A misbehaving upstream speaking raw HTTP/1.1: for each request it receives (head and
/// Content-Length body), `respond` returns the bytes to write and whether to close the connection
/// afterwards: `None` keeps it, `Some(d)` closes it `d` later without reading anything more.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start<F>(respond: F) -> RawUpstream
    where
        F: Fn(&str) -> (Vec<u8>, Option<Duration>) + Send + Sync + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let respond = Arc::new(respond);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let (seen, respond) = (seen.clone(), respond.clone());
                connections.spawn(async move {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        while let Some(end) = find(&pending, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
                            let length = head
                                .to_ascii_lowercase()
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_string()))
                                .and_then(|v| v.parse::<usize>().ok())
                                .unwrap_or(0);
                            if pending.len() < end + 4 + length {
                                break;
                            }
                            pending.drain(..end + 4 + length);
                            seen.lock().unwrap().push(head.clone());
                            let (bytes, close) = respond(&head);
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                            if let Some(after) = close {
                                tokio::time::sleep(after).await;
                                let _ = stream.shutdown().await;
                                return;
                            }
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        RawUpstream { addr, requests, task }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real `redis-server` (Debian's package) on a free loopback port, with its data in a temporary
/// folder (append-only file on, so that a restart keeps what was written); stopped on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

pub fn redis_available() -> bool {
    Command::new("redis-server").arg("--version").output().is_ok()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> RedisServer {
        assert!(
            redis_available(),
            "the replica tests need Debian's redis-server (apt-get install redis-server; .ci/run does)"
        );
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not come up on {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` against this server; returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of `n` masters (no replicas), made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start(n: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]).await);
        }
        let addresses: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect()
    }
}

/// Keep-alive requests sent back to back by `connections` clients until stopped; every answer
/// is expected to be 200.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadResult {
    pub ok: u64,
    /// Each answer other than 200, and each failed request (reset, refused, timed out).
    pub failures: Vec<String>,
}

impl Load {
    /// Starts `connections` raw keep-alive connections that never retry: a request sent
    /// on a connection the gateway closes without answering it counts as failed (as it does
    /// for clients that do not resend). A response with `Connection: close` is followed by a
    /// new connection.
    pub fn start_raw(addr: String, path: &str, token: Option<String>, connections: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n{auth}\r\n").into_bytes();
        let tasks = (0..connections)
            .map(|_| {
                let (addr, request, stop) = (addr.clone(), request.clone(), stop.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    let mut conn: Option<tokio::net::TcpStream> = None;
                    let mut buf = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let stream = match &mut conn {
                            Some(s) => s,
                            None => match tokio::net::TcpStream::connect(&addr).await {
                                Ok(s) => {
                                    buf.clear();
                                    conn.insert(s)
                                }
                                Err(e) => {
                                    failures.push(format!("connect: {e}"));
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                            },
                        };
                        if let Err(e) = stream.write_all(&request).await {
                            failures.push(format!("send: {e}"));
                            conn = None;
                            continue;
                        }
                        // one response: head, then Content-Length bytes of body
                        let outcome = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                                let length: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse().ok())
                                    .unwrap_or(0);
                                if buf.len() >= end + 4 + length {
                                    let status = head.split(' ').nth(1).unwrap_or("").to_string();
                                    let close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
                                    buf.drain(..end + 4 + length);
                                    break Ok((status, close));
                                }
                            }
                            let mut chunk = [0u8; 16 * 1024];
                            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
                                Ok(Ok(0)) => break Err("the connection closed before the response".to_string()),
                                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                                Ok(Err(e)) => break Err(format!("read: {e}")),
                                Err(_) => break Err("no response within 10s".to_string()),
                            }
                        };
                        match outcome {
                            Ok((status, close)) => {
                                if status == "200" {
                                    ok += 1;
                                } else {
                                    failures.push(format!("status {status}"));
                                }
                                if close {
                                    conn = None;
                                }
                            }
                            Err(why) => {
                                failures.push(why);
                                conn = None;
                            }
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, tasks }
    }

    pub async fn stop(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut result = LoadResult { ok: 0, failures: Vec::new() };
        for t in self.tasks {
            let (ok, failures) = t.await.unwrap();
            result.ok += ok;
            result.failures.extend(failures);
        }
        result
    }
}

/// A real external OAuth authorization server: panva's `oidc-provider` (npm), run by
/// `tests/interop/node/oidc_issuer.mjs` on a free loopback port. It issues client_credentials
/// tokens to `partner` (the default scopes) and `other` (`weather.stations:read` only): a JWT
/// (`typ` `at+jwt`, `aud` the resource) when the request names the resource, an opaque token
/// otherwise, which the `gateway` client may introspect. Its `/test/…` endpoints count requests
/// and take the JWKS or introspection endpoint down, rotate the signing key, and revoke tokens, so
/// the gateway's handling of an issuer it does not control is tested against a real one.
/// Its stdin stays open while this lives (the program exits at EOF, so it never outlives a
/// crashed test); dropping this kills it.
#[allow(dead_code)] // a toolkit: not every test reads every field or calls every helper
pub struct OidcIssuer {
    /// `http://127.0.0.1:PORT`, also the `iss` of its tokens.
    pub issuer: String,
    pub port: u16,
    /// The resource (`aud` of its JWTs).
    pub resource: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub gateway_client_id: String,
    pub gateway_client_secret: String,
    /// The signing key's id at start; [`OidcIssuer::rotate`] answers the new one.
    pub kid: String,
    child: Option<Child>,
    /// Kept open: the program exits when its stdin closes.
    _stdin: Option<std::process::ChildStdin>,
    /// Kept open so that nothing it writes later fails with a broken pipe.
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    stderr: tempfile::NamedTempFile,
    http: reqwest::Client,
}

#[allow(dead_code)]
impl OidcIssuer {
    /// Default scopes `weather.observations:read weather.stations:read`, resource
    /// `https://api.grounddata.example`, tokens valid 5 minutes; `alg` is `ES256` or `RS256`.
    pub async fn start(alg: &str) -> OidcIssuer {
        Self::start_with(serde_json::json!({ "alg": alg })).await
    }

    /// With a config for the program (keys: port, resource, alg, scopes, other_scopes,
    /// access_token_ttl, clients); unset keys take the defaults of [`OidcIssuer::start`].
    pub async fn start_with(mut config: serde_json::Value) -> OidcIssuer {
        use std::io::BufRead;
        crate::interop::ensure_clients();
        let defaults = serde_json::json!({
            "port": 0,
            "alg": "ES256",
            "resource": "https://api.grounddata.example",
            "scopes": "weather.observations:read weather.stations:read",
            "access_token_ttl": 300,
        });
        for (k, v) in defaults.as_object().unwrap() {
            config.as_object_mut().expect("the issuer config is a JSON object").entry(k.clone()).or_insert(v.clone());
        }
        let stderr = tempfile::NamedTempFile::new().expect("a temporary file for the issuer's stderr");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node/oidc_issuer.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.reopen().expect("reopen the issuer's stderr file")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // Read the one JSON line on a blocking thread; on a timeout the child is killed, which
        // ends that read.
        let pid = child.id();
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let n = stdout.read_line(&mut line);
            (stdout, line, n)
        });
        let started = match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(joined) => joined.expect("the issuer's stdout reader"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "oidc_issuer.mjs (pid {pid}) printed nothing within 30s; stderr:\n{}",
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                );
            }
        };
        let (stdout, line, read_result) = started;
        let info: serde_json::Value = match (read_result, serde_json::from_str::<serde_json::Value>(&line)) {
            (Ok(_), Ok(info)) => info,
            (read_result, parsed) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!(
                    "oidc_issuer.mjs did not start ({status}; read {read_result:?}, parse {:?}); stdout: {line:?}; stderr:\n{}",
                    parsed.err(),
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                );
            }
        };
        let field = |name: &str| {
            info[name]
                .as_str()
                .unwrap_or_else(|| panic!("oidc_issuer.mjs printed no {name}: {info}"))
                .to_string()
        };
        OidcIssuer {
            issuer: field("issuer"),
            port: info["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("oidc_issuer.mjs printed no port"),
            resource: field("resource"),
            jwks_uri: field("jwks_uri"),
            introspection_endpoint: field("introspection_endpoint"),
            gateway_client_id: field("gateway_client_id"),
            gateway_client_secret: field("gateway_client_secret"),
            kid: field("kid"),
            child: Some(child),
            _stdin: stdin,
            _stdout: Some(stdout),
            stderr,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// What the program wrote to stderr so far (its errors).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// POSTs to one of its `/test/…` endpoints; panics unless it answers 200 with JSON.
    async fn control(&self, path_and_query: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let response = self
            .http
            .post(self.url(path_and_query))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path_and_query} to the issuer: {e}; stderr:\n{}", self.logs()));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status == 200, "POST {path_and_query} to the issuer: {status} {body}; stderr:\n{}", self.logs());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path_and_query}: no JSON ({e}): {body}"))
    }

    /// The token endpoint's answer to a client_credentials request of `client` (`partner` or
    /// `other`) for all of its scopes; with the resource (a JWT) or without (an opaque token).
    pub async fn token_response(&self, client: &str, resource: bool) -> serde_json::Value {
        self.control(&format!("/test/token?client={client}&resource={}", u8::from(resource)), &[]).await
    }

    /// A JWT access token for `client`, audience the resource.
    pub async fn jwt_token(&self, client: &str) -> String {
        let response = self.token_response(client, true).await;
        response["access_token"].as_str().unwrap_or_else(|| panic!("no access_token: {response}")).to_string()
    }

    /// An opaque access token for `client` (only introspection tells what it is).
    pub async fn opaque_token(&self, client: &str) -> String {
        let response = self.token_response(client, false).await;
        response["access_token"].as_str().unwrap_or_else(|| panic!("no access_token: {response}")).to_string()
    }

    /// `{"jwks": N, "introspection": N, "discovery": N}`: requests that reached those endpoints
    /// (those answered 503 by the knobs included).
    pub async fn counts(&self) -> serde_json::Value {
        let response = self
            .http
            .get(self.url("/test/counts"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /test/counts: {e}; stderr:\n{}", self.logs()));
        response.json().await.expect("the issuer's counts")
    }

    /// A new signing key replaces the old one (the JWKS then lists only the new one); answers
    /// its kid. Opaque tokens issued before still introspect.
    pub async fn rotate(&self) -> String {
        let answer = self.control("/test/rotate", &[]).await;
        answer["kid"].as_str().unwrap_or_else(|| panic!("no kid: {answer}")).to_string()
    }

    /// While down, the JWKS endpoint answers 503.
    pub async fn set_jwks_down(&self, down: bool) {
        self.control(&format!("/test/jwks?down={}", u8::from(down)), &[]).await;
    }

    /// While down, the introspection endpoint answers 503.
    pub async fn set_introspection_down(&self, down: bool) {
        self.control(&format!("/test/introspection?down={}", u8::from(down)), &[]).await;
    }

    /// Revokes `token` at the issuer (as the client it was issued to): introspection then says
    /// `active: false`. A JWT stays valid by its signature.
    pub async fn revoke(&self, token: &str) {
        self.control("/test/revoke", &[("token", token)]).await;
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self._stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            if !logs.is_empty() {
                eprintln!("--- oidc issuer stderr ---\n{logs}");
            }
        }
    }
}
