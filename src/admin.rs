//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (the process is up) and
//! `/readyz` (config loaded and every upstream has a healthy server). Kept off the proxy port so
//! that it can be firewalled separately.

use crate::gateway::Gateway;
use crate::reply::Reply;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    gw: Arc<Gateway>,
}

impl AdminApp {
    pub fn new(gw: Arc<Gateway>) -> Self {
        AdminApp { gw }
    }

    pub fn answer(&self, method: &http::Method, path: &str) -> Reply {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Reply::error(405, "method_not_allowed", "the admin endpoints take GET").with_header("Allow", "GET, HEAD");
        }
        match path {
            "/metrics" => {
                self.gw.refresh_gauges();
                let mut reply = Reply::json(200, &());
                reply.headers = vec![
                    ("Content-Type", prometheus::TEXT_FORMAT.to_string()),
                    ("Cache-Control", "no-store".to_string()),
                ];
                reply.body = self.gw.metrics.render().into();
                reply
            }
            "/healthz" => Reply::json(200, &serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let upstreams: serde_json::Map<String, serde_json::Value> = self
                    .gw
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
                let ready = self.gw.is_ready();
                let store = match self.gw.store.revocations().stale_since() {
                    None => serde_json::json!({"status": "ok"}),
                    Some(since) => serde_json::json!({"status": "unavailable", "revocations_stale_since": since}),
                };
                Reply::json(
                    if ready { 200 } else { 503 },
                    &serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "upstreams": upstreams, "store": store}),
                )
            }
            _ => Reply::error(404, "not_found", "admin endpoints: /metrics, /healthz, /readyz"),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let reply = self.answer(&req.method, req.uri.path());
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
