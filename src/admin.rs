//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (the process is up),
//! `/readyz` (config loaded and every upstream has a healthy server) and `POST /reload` (re-read
//! the config file). Kept off the proxy port so that it can be firewalled separately: whoever
//! reaches it can reload the config.

use crate::gateway::Shared;
use crate::reload::Reloader;
use crate::reply::Reply;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
}

impl AdminApp {
    pub fn new(shared: Arc<Shared>, reloader: Arc<Reloader>) -> Self {
        AdminApp { shared, reloader }
    }

    pub async fn answer(&self, method: &http::Method, path: &str) -> Reply {
        if path == "/reload" {
            if method != http::Method::POST {
                return Reply::error(405, "method_not_allowed", "reload with POST").with_header("Allow", "POST");
            }
            return match self.reloader.reload("POST /reload").await {
                Ok(done) => Reply::json(200, &serde_json::json!({"status": "reloaded", "hash": done.hash, "changed": done.changed, "needs_restart": done.needs_restart})),
                Err(e) => Reply::json(
                    400,
                    &serde_json::json!({
                        "error": "invalid_config",
                        "error_description": "the config was not reloaded; the running one stays",
                        "errors": e.messages(),
                    }),
                ),
            }
            .no_store();
        }
        if method != http::Method::GET && method != http::Method::HEAD {
            return Reply::error(405, "method_not_allowed", "the admin endpoints take GET").with_header("Allow", "GET, HEAD");
        }
        let gw = self.shared.current();
        match path {
            "/metrics" => {
                gw.refresh_gauges();
                let mut reply = Reply::json(200, &());
                reply.headers = vec![
                    ("Content-Type", prometheus::TEXT_FORMAT.to_string()),
                    ("Cache-Control", "no-store".to_string()),
                ];
                reply.body = self.shared.metrics.render().into();
                reply
            }
            "/healthz" => Reply::json(200, &serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let upstreams: serde_json::Map<String, serde_json::Value> = gw
                    .upstreams
                    .iter()
                    .map(|u| {
                        let healthy: Vec<String> = u
                            .servers_health()
                            .into_iter()
                            .filter(|(_, h)| *h)
                            .map(|(s, _)| s.to_string())
                            .collect();
                        (u.name().to_string(), serde_json::json!({ "healthy_servers": healthy }))
                    })
                    .collect();
                let ready = gw.is_ready();
                let store = match gw.store.revocations().stale_since() {
                    None => serde_json::json!({"status": "ok"}),
                    Some(since) => serde_json::json!({"status": "unavailable", "revocations_stale_since": since}),
                };
                let issuers: serde_json::Map<String, serde_json::Value> = gw
                    .verifier
                    .external_issuers()
                    .map(|e| e.all())
                    .unwrap_or_default()
                    .iter()
                    .map(|i| (i.name().to_string(), i.status()))
                    .collect();
                Reply::json(
                    if ready { 200 } else { 503 },
                    &serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "config": gw.config.hash, "upstreams": upstreams, "store": store, "issuers": issuers}),
                )
            }
            _ => Reply::error(404, "not_found", "admin endpoints: /metrics, /healthz, /readyz, POST /reload"),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_string());
        let reply = self.answer(&method, &path).await;
        let mut builder = Response::builder().status(reply.status);
        for (name, value) in &reply.headers {
            builder = builder.header(*name, value);
        }
        builder
            .header("Content-Length", reply.body.len())
            .body(reply.body.to_vec())
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
