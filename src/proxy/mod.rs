//! The Pingora `ProxyHttp` implementation: the order of the request's steps, nothing else.
//!
//! request_filter: hosted OAuth endpoint? → path check → route → bearer token + scopes;
//! upstream_peer: pick a healthy server; upstream_request_filter: identity headers;
//! fail_to_connect: retry once elsewhere; fail_to_proxy: 502/504 JSON; logging: metrics + access log.

mod path;
pub mod respond;

use crate::auth::verifier::Grant;
use crate::gateway::{Gateway, InFlightGuard, UNMATCHED_LABEL};
use crate::ids::unix_now;
use crate::metrics::method_label;
use crate::oauth::{Endpoint, HostedRequest, MAX_BODY_BYTES};
use bytes::{Bytes, BytesMut};
use crate::reply::Reply;
use crate::routes::{Route, RouteAuth, RouteMatch};
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Identity headers set for the upstream; copies sent by clients are always removed.
pub const CLIENT_ID_HEADER: &str = "X-OADA-Client-Id";
pub const SCOPE_HEADER: &str = "X-OADA-Scope";

/// How many servers one request may try (the first, and one retry on another server).
const MAX_ATTEMPTS: usize = 2;

/// A client must deliver a hosted endpoint's body within this time.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Per-request state shared by the hooks.
pub struct RequestCtx {
    start: Instant,
    /// Metrics/log label: a route name, a hosted endpoint, or `unmatched`.
    label: Label,
    route: Option<usize>,
    grant: Option<Arc<Grant>>,
    auth: &'static str,
    tried: [Option<SocketAddr>; MAX_ATTEMPTS],
    /// Keeps the request counted as in flight (graceful shutdown waits for it).
    _in_flight: InFlightGuard,
}

#[derive(Clone, Copy)]
enum Label {
    Unmatched,
    Hosted(&'static str),
    Route(usize),
}

impl RequestCtx {
    fn tried(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.tried.iter().flatten().copied()
    }

    fn attempts(&self) -> usize {
        self.tried.iter().flatten().count()
    }

    fn last_server(&self) -> Option<SocketAddr> {
        self.tried.iter().rev().flatten().next().copied()
    }
}

pub struct Proxy {
    gw: Arc<Gateway>,
}

impl Proxy {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Proxy { gw }
    }

    fn route(&self, ctx: &RequestCtx) -> Option<&Route> {
        ctx.route.map(|id| self.gw.config.routes.route(id))
    }

    fn label<'a>(&'a self, ctx: &RequestCtx) -> &'a str {
        match ctx.label {
            Label::Unmatched => UNMATCHED_LABEL,
            Label::Hosted(name) => name,
            Label::Route(id) => &self.gw.config.routes.route(id).name,
        }
    }

    /// Reads the (bounded) body of a request to a hosted endpoint and lets the endpoint answer.
    async fn serve_hosted(&self, endpoint: Endpoint, session: &mut Session) -> Reply {
        let body = if endpoint.takes_body() {
            match read_body(session, MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(reply) => return reply,
            }
        } else {
            Bytes::new()
        };
        let req = session.req_header();
        let request = HostedRequest {
            method: &req.method,
            headers: &req.headers,
            body,
            now: unix_now(),
        };
        self.gw.oauth.handle(endpoint, &request).await
    }

    async fn reply(&self, session: &mut Session, reply: &Reply) -> pingora::Result<bool> {
        respond::send(session, reply).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            label: Label::Unmatched,
            route: None,
            grant: None,
            auth: "none",
            tried: [None; MAX_ATTEMPTS],
            _in_flight: self.gw.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        let req = session.req_header();
        let path = req.uri.path();

        if let Some(endpoint) = self.gw.oauth.endpoint_for(path) {
            ctx.label = Label::Hosted(endpoint.label());
            let reply = self.serve_hosted(endpoint, session).await;
            return self.reply(session, &reply).await;
        }

        if let Err(why) = path::check(path) {
            return self.reply(session, &Reply::error(400, "invalid_request", why)).await;
        }

        let method = req.method.clone();
        let route = match self.gw.config.routes.find(path, &method) {
            RouteMatch::Found(route) => route,
            RouteMatch::MethodNotAllowed { allow } => {
                let mut reply = Reply::error(405, "method_not_allowed", format!("{method} is not allowed here"));
                if !allow.is_empty() {
                    reply = reply.with_header("Allow", allow);
                }
                return self.reply(session, &reply).await;
            }
            RouteMatch::NotFound => {
                return self
                    .reply(session, &Reply::error(404, "not_found", "no route matches this path"))
                    .await;
            }
        };
        ctx.label = Label::Route(route.id);
        ctx.route = Some(route.id);

        let RouteAuth::Bearer(requirement) = &route.auth else {
            return Ok(false);
        };
        let req = session.req_header();
        let decision = self
            .gw
            .authorizer
            .authorize(&req.headers, req.uri.query(), &method, requirement, unix_now())
            .await;
        let metrics = &self.gw.metrics;
        match decision {
            Ok(verified) => {
                if verified.cached {
                    metrics.token_cache_hits.inc();
                } else {
                    metrics.token_cache_misses.inc();
                }
                ctx.auth = "allowed";
                ctx.grant = Some(verified.token.grant);
                metrics.count_auth_decision("allowed");
                Ok(false)
            }
            Err(denial) => {
                ctx.auth = denial.metric_label();
                metrics.count_auth_decision(ctx.auth);
                let reply = denial.reply(self.gw.config.issuer.as_str());
                self.reply(session, &reply).await
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
        let route = self
            .route(ctx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let upstream = &self.gw.upstreams[route.upstream];
        let tried: Vec<SocketAddr> = ctx.tried().collect();
        let Some(addr) = upstream.select(&tried) else {
            self.gw
                .metrics
                .upstream_failures
                .with_label_values(&[upstream.name(), "no_healthy_server"])
                .inc();
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                format!("no healthy server in upstream {}", upstream.name()),
            ));
        };
        if let Some(slot) = ctx.tried.iter_mut().find(|s| s.is_none()) {
            *slot = Some(addr);
        }
        Ok(Box::new(upstream.peer(addr)))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_request.remove_header(CLIENT_ID_HEADER);
        upstream_request.remove_header(SCOPE_HEADER);
        if let Some(route) = self.route(ctx) {
            if !route.forward_authorization {
                upstream_request.remove_header(&http::header::AUTHORIZATION);
            }
        }
        if let Some(grant) = &ctx.grant {
            upstream_request.insert_header(CLIENT_ID_HEADER, grant.client_id_header.clone())?;
            upstream_request.insert_header(SCOPE_HEADER, grant.scope_header.clone())?;
        }
        // never forward a query-string token
        if self.gw.authorizer.allows_query_token() {
            if let Some(query) = upstream_request.uri.query().filter(|q| q.contains("access_token")) {
                let stripped = crate::auth::bearer::strip_query_token(query);
                let path = upstream_request.uri.path().to_string();
                let uri = if stripped.is_empty() { path } else { format!("{path}?{stripped}") };
                upstream_request.set_uri(uri.parse().map_err(|_| Error::explain(ErrorType::InternalError, "rebuilt URI"))?);
            }
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = client.ip().to_string();
            let forwarded = match upstream_request.headers.get("X-Forwarded-For").and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip,
            };
            upstream_request.insert_header("X-Forwarded-For", forwarded)?;
        }
        let proto = if self.gw.config.tls.is_some() { "https" } else { "http" };
        upstream_request.insert_header("X-Forwarded-Proto", proto)?;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(route) = self.route(ctx) {
            let upstream = &self.gw.upstreams[route.upstream];
            let kind = if matches!(e.etype(), ErrorType::ConnectTimedout) { "timeout" } else { "connect" };
            self.gw
                .metrics
                .upstream_failures
                .with_label_values(&[upstream.name(), kind])
                .inc();
            let tried: Vec<SocketAddr> = ctx.tried().collect();
            if ctx.attempts() < MAX_ATTEMPTS && upstream.has_alternative(&tried) {
                e.set_retry(true);
            }
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let upstream = self
            .route(ctx)
            .map(|r| self.gw.upstreams[r.upstream].name().to_string())
            .unwrap_or_default();
        let reply = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => Some(Reply::error(*code, "error", "the request failed")),
            (_, ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
                if matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout) {
                    self.gw
                        .metrics
                        .upstream_failures
                        .with_label_values(&[&upstream, "timeout"])
                        .inc();
                }
                Some(Reply::error(504, "gateway_timeout", format!("upstream {upstream} did not answer in time")))
            }
            (_, ErrorType::ConnectNoRoute) => Some(Reply::error(
                502,
                "bad_gateway",
                format!("no healthy server in upstream {upstream}"),
            )),
            (ErrorSource::Upstream, _) => Some(Reply::error(
                502,
                "bad_gateway",
                format!("upstream {upstream} could not be reached"),
            )),
            (ErrorSource::Downstream, ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed) => None,
            (ErrorSource::Downstream, _) => Some(Reply::error(400, "invalid_request", "the request could not be read")),
            _ => Some(Reply::error(500, "server_error", "the gateway failed to handle the request")),
        };
        let code = match reply {
            Some(reply) => {
                if session.response_written().is_none() {
                    if let Err(write_error) = respond::send(session, &reply).await {
                        tracing::debug!(error = %write_error, "could not send the error response");
                    }
                }
                reply.status
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let method = method_label(&req.method);
        let label = self.label(ctx);
        let elapsed = ctx.start.elapsed();
        match ctx.label {
            Label::Route(id) => self.gw.route_metrics[id].record(&req.method, status, elapsed),
            Label::Unmatched => self.gw.unmatched_metrics.record(&req.method, status, elapsed),
            Label::Hosted(name) => self.gw.metrics.record_request(name, &req.method, status, elapsed),
        }
        if self.gw.config.server.access_log {
            let client_id = ctx.grant.as_ref().map(|g| &*g.client_id).unwrap_or("-");
            let server = ctx.last_server().map(|s| s.to_string());
            tracing::info!(
                target: "oada_gateway::access",
                route = label,
                method,
                path = req.uri.path(),
                status,
                client_id,
                upstream = server.as_deref().unwrap_or("-"),
                auth = ctx.auth,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                error = e.map(|e| e.etype().as_str()).unwrap_or(""),
                "request"
            );
        }
    }
}

/// Reads a request body of at most `limit` bytes; larger bodies get 413 without being read whole.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Reply> {
    let too_large = || Reply::error(413, "invalid_request", format!("the request body exceeds {limit} bytes"));
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    session.set_read_timeout(Some(BODY_READ_TIMEOUT));
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                tracing::debug!(error = %e, "reading a request body failed");
                return Err(Reply::error(400, "invalid_request", "the request body could not be read"));
            }
        }
    }
}
