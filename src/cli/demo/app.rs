//! FieldScout, the demo's app: a public client a person uses in a browser during
//! `oada-gateway demo --serve`. It sends the browser to the gateway's authorization endpoint (PKCE
//! S256, a state), takes the code at its callback, exchanges it, and shows the person's stations.

use super::person::APP_CLIENT_ID;
use crate::oauth::pkce;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use minijinja::{context, Environment};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

const TEMPLATE: &str = include_str!("../../../templates/demo_app.html");
const STYLE: &str = include_str!("../../../templates/gateway.css");
/// Flows started and not finished that the app remembers (state → PKCE verifier).
const MAX_PENDING: usize = 1000;

struct App {
    /// The gateway's issuer URL.
    issuer: String,
    redirect_uri: String,
    http: reqwest::Client,
    pending: Mutex<HashMap<String, String>>,
    env: Environment<'static>,
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

impl App {
    fn render(&self, status: StatusCode, ctx: minijinja::Value) -> Response<Full<Bytes>> {
        let body = self
            .env
            .get_template("app")
            .and_then(|t| t.render(context! { style => minijinja::Value::from_safe_string(STYLE.to_string()), ..ctx }))
            .unwrap_or_else(|e| format!("template error: {e}"));
        html(status, body)
    }

    fn error(&self, message: &str) -> Response<Full<Bytes>> {
        self.render(StatusCode::BAD_REQUEST, context! { page => "error", message })
    }

    async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Ok(match req.uri().path() {
            "/" => self.render(StatusCode::OK, context! { page => "home" }),
            "/privacy" => self.render(StatusCode::OK, context! { page => "privacy" }),
            "/start" => self.start(),
            "/callback" => self.callback(&query).await,
            _ => html(StatusCode::NOT_FOUND, "not found".into()),
        })
    }

    fn start(&self) -> Response<Full<Bytes>> {
        let state = crate::ids::random_id(16);
        let verifier = crate::ids::random_id(48);
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.clear();
            }
            pending.insert(state.clone(), verifier.clone());
        }
        let mut url = match url::Url::parse(&format!("{}/authorization", self.issuer)) {
            Ok(u) => u,
            Err(e) => return self.error(&e.to_string()),
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", APP_CLIENT_ID)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "weather.stations:read weather.observations:read")
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce::challenge_of(&verifier))
            .append_pair("code_challenge_method", "S256");
        Response::builder()
            .status(StatusCode::FOUND)
            .header("Location", url.as_str())
            .body(Full::new(Bytes::new()))
            .expect("static response parts are valid")
    }

    async fn callback(&self, query: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let verifier = query
            .get("state")
            .and_then(|s| self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(s));
        let Some(verifier) = verifier else {
            return self.error("This answer does not belong to a sync FieldScout started (unknown state).");
        };
        if let Some(error) = query.get("error") {
            return self.error(&format!("grounddata answered {error}: {}", query.get("error_description").map(String::as_str).unwrap_or("")));
        }
        let Some(code) = query.get("code") else {
            return self.error("grounddata sent no code.");
        };
        let exchange = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("client_id", APP_CLIENT_ID),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await;
        let tokens: serde_json::Value = match exchange {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            Ok(r) => return self.error(&format!("the code exchange failed: {}", r.text().await.unwrap_or_default())),
            Err(e) => return self.error(&format!("the code exchange failed: {e}")),
        };
        let access = tokens["access_token"].as_str().unwrap_or_default();
        let stations: serde_json::Value = match self.http.get(format!("{}/stations", self.issuer)).bearer_auth(access).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => return self.error(&format!("reading the stations failed: {e}")),
        };
        self.render(
            StatusCode::OK,
            context! {
                page => "stations",
                stations => stations["stations"].clone(),
                user => stations["owner"].as_str().unwrap_or("?"),
                scope => tokens["scope"].as_str().unwrap_or(""),
                expires_in => tokens["expires_in"].as_u64().unwrap_or(0),
            },
        )
    }
}

/// Serves the demo app on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, issuer: String, redirect_uri: String) {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("app", TEMPLATE).expect("the bundled template parses");
    let app = Arc::new(App {
        issuer,
        redirect_uri,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
        pending: Mutex::new(HashMap::new()),
        env,
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| app.clone().handle(req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
