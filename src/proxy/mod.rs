//! The Pingora `ProxyHttp` implementation: the order of the request's steps, nothing else.
//!
//! on_connection_reuse: the request head is in (the connection's header deadline ends);
//! request_filter: strict HTTP checks → hosted OAuth endpoint? → path check → route → bearer token
//! + scopes → body deadline, `100 Continue`; request_body_filter: body complete;
//! upstream_peer: pick a healthy server; upstream_request_filter: normalized request, identity
//! headers; upstream_response_filter: refuse unsolicited upgrades; error_while_proxy and
//! fail_to_connect: count failures, decide retries; fail_to_proxy: 4xx/5xx JSON; logging: metrics
//! and the access log.

pub mod path;
pub mod respond;
pub mod strict;

use crate::auth::verifier::{Grant, PartnerOf};
use crate::ratelimit::requests::{address_of, Caller, Now};
use crate::telemetry::{RequestTrace, Step, Telemetry};
use crate::downstream::ConnHandle;
use crate::gateway::{Gateway, InFlightGuard, Shared, UNMATCHED_LABEL};
use crate::metrics::Metrics;
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
use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strict::{HeadFacts, HeadLimits};

/// Identity headers set for the upstream; copies sent by clients are always removed.
pub const CLIENT_ID_HEADER: &str = "X-OADA-Client-Id";
pub const SCOPE_HEADER: &str = "X-OADA-Scope";
/// The person a token is for; absent on a client's own tokens.
pub const USER_ID_HEADER: &str = "X-OADA-User-Id";
/// Who the client belongs to: the configured partner's name, or a software statement's
/// `software_id`; absent otherwise.
pub const PARTNER_HEADER: &str = "X-OADA-Partner";
/// Who issued the token: the gateway's own issuer or an external one (`issuers[].issuer`).
pub const ISSUER_HEADER: &str = "X-OADA-Issuer";
const X_FORWARDED_FOR: &str = "X-Forwarded-For";

/// How many servers one request may try (the first, and one retry on another server).
const MAX_ATTEMPTS: usize = 2;

/// A client must deliver a hosted endpoint's whole body within this time, or the body timeout if
/// shorter (a deadline, not an idle timer: a byte every few seconds does not keep it open).
const HOSTED_BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Retries on a fresh connection after a pooled one turned out dead, per request.
const MAX_FRESH_RETRIES: u8 = 2;

/// The upstream error of an unsolicited `101 Switching Protocols`.
const UNSOLICITED_UPGRADE: ErrorType = ErrorType::Custom("unsolicited_upgrade");

/// Per-request state shared by the hooks.
pub struct RequestCtx {
    /// The config in force when the request started; it keeps it to its end.
    gw: Arc<Gateway>,
    start: Instant,
    /// Metrics/log label: a route name, a hosted endpoint, or `unmatched`.
    label: Label,
    route: Option<usize>,
    grant: Option<Arc<Grant>>,
    auth: &'static str,
    /// The token's configured partner (index into the config's clients).
    partner: Option<u16>,
    /// What the request's head says about its body, `Expect` and `Upgrade` (checked once).
    head: HeadFacts,
    tried: [Option<SocketAddr>; MAX_ATTEMPTS],
    /// A pooled connection to the last server failed before the request went out: try that
    /// server again on a fresh connection.
    fresh_retry: bool,
    fresh_retries: u8,
    /// The client connection (absent on HTTP/2).
    conn: Option<ConnHandle>,
    /// The request's trace (from its head on).
    trace: Option<RequestTrace>,
    /// The current attempt at the upstream.
    upstream_call: Option<Step>,
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
    fn route(&self) -> Option<&Route> {
        self.route.map(|id| self.gw.config.routes.route(id))
    }

    fn label(&self) -> &str {
        match self.label {
            Label::Unmatched => UNMATCHED_LABEL,
            Label::Hosted(name) => name,
            Label::Route(id) => &self.gw.config.routes.route(id).name,
        }
    }

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
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    telemetry: Option<Arc<Telemetry>>,
    head_limits: HeadLimits,
    /// Makes every fresh-connection retry miss Pingora's connection pool.
    fresh_group: AtomicU64,
}

impl Proxy {
    /// The proxy of the running gateway; the downstream limits are taken from the config it
    /// starts with (they need a restart to change).
    pub fn new(shared: Arc<Shared>) -> Self {
        let gw = shared.current();
        let d = &gw.config.server.downstream;
        let head_limits = HeadLimits {
            max_total: d.max_request_header_bytes,
            max_line: d.max_request_header_line_bytes,
            allow_trace: d.allow_trace,
            pass_underscores: d.underscores_in_headers,
        };
        Proxy {
            metrics: shared.metrics.clone(),
            telemetry: shared.telemetry.clone(),
            shared,
            head_limits,
            fresh_group: AtomicU64::new(1),
        }
    }

    /// Reads the (bounded) body of a request to a hosted endpoint and lets the endpoint answer.
    async fn serve_hosted(gw: &Gateway, endpoint: Endpoint, head: &HeadFacts, trace: Option<&RequestTrace>, session: &mut Session) -> Reply {
        let body = if endpoint.takes_body(&session.req_header().method) {
            let deadline = HOSTED_BODY_DEADLINE.min(gw.config.server.downstream.body_timeout);
            match read_body(session, head, MAX_BODY_BYTES, deadline).await {
                Ok(body) => body,
                Err(reply) => return reply,
            }
        } else {
            Bytes::new()
        };
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let req = session.req_header();
        let request = HostedRequest {
            method: &req.method,
            headers: &req.headers,
            query: req.uri.query(),
            body,
            now: unix_now(),
            client_ip,
            trace: trace.filter(|t| t.exporting()),
        };
        gw.oauth.handle(endpoint, &request).await
    }

    /// The request may go upstream unless a rate limit or quota says otherwise: its body (if
    /// any) now has a deadline, and a client waiting for `100 Continue` gets it from the gateway
    /// (the `Expect` is not forwarded).
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        if let (Some(route), false) = (ctx.route, ctx.gw.limits.is_empty()) {
            let address = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
            let caller = Caller {
                partner: ctx.partner,
                address: address_of(address),
            };
            if let Err(refusal) = ctx.gw.limits.check(route, caller, Now::current()) {
                ctx.gw.limits.count_refusal(&self.metrics, &caller, &refusal);
                ctx.auth = "rate_limited";
                if ctx.head.has_body() {
                    // the body stays unread: do not let its bytes be taken for the next request
                    session.set_keepalive(None);
                }
                return self.reply(session, &refusal.reply()).await;
            }
        }
        if ctx.head.has_body() {
            if let Some(conn) = &ctx.conn {
                conn.0.start_body_deadline();
            }
            if ctx.head.expects_continue() {
                session.write_continue_response().await?;
            }
        }
        Ok(false)
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
            gw: self.shared.current(),
            start: Instant::now(),
            label: Label::Unmatched,
            route: None,
            grant: None,
            auth: "none",
            partner: None,
            head: HeadFacts::default(),
            tried: [None; MAX_ATTEMPTS],
            fresh_retry: false,
            fresh_retries: 0,
            conn: None,
            trace: None,
            upstream_call: None,
            _in_flight: self.shared.in_flight.enter(),
        }
    }

    fn on_connection_reuse(&self, _session: &mut Session, ctx: &mut RequestCtx, prev: Box<dyn Any + Send + Sync>) {
        if let Ok(handle) = prev.downcast::<ConnHandle>() {
            handle.0.head_complete();
            ctx.conn = Some(*handle);
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        match strict::check_head(session.req_header(), &self.head_limits) {
            Ok(head) => {
                ctx.head = head;
                let req = session.req_header();
                ctx.trace = Some(RequestTrace::begin(self.telemetry.as_deref(), &req.headers, head.carries_trace_context(), &req.method, req.uri.path()));
            }
            Err(reply) => {
                session.set_keepalive(None);
                return self.reply(session, &reply).await;
            }
        }
        let req = session.req_header();
        let path = req.uri.path();

        if let Some(endpoint) = ctx.gw.oauth.endpoint_for(path) {
            ctx.label = Label::Hosted(endpoint.label());
            if let Some(trace) = &ctx.trace {
                trace.name_after(&session.req_header().method, endpoint.label());
            }
            let reply = Self::serve_hosted(&ctx.gw, endpoint, &ctx.head, ctx.trace.as_ref(), session).await;
            return self.reply(session, &reply).await;
        }

        if let Err(why) = path::check(path) {
            return self.reply(session, &Reply::error(400, "invalid_request", why)).await;
        }

        let method = req.method.clone();
        let routing_path = path::routing_path(path);
        let route = match ctx.gw.config.routes.find(&routing_path, &method) {
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
        if let Some(trace) = &ctx.trace {
            trace.name_after(&method, &route.name);
        }

        let RouteAuth::Bearer(requirement) = &route.auth else {
            return self.admit(session, ctx).await;
        };
        let req = session.req_header();
        let step = ctx.trace.as_ref().filter(|t| t.exporting()).map(|t| t.step("authorize", opentelemetry::trace::SpanKind::Internal));
        let decision = ctx
            .gw
            .authorizer
            .authorize(&req.headers, req.uri.query(), &method, requirement, route.issuers.as_deref(), unix_now())
            .await;
        if let (Some(step), Err(denial)) = (&step, &decision) {
            step.fail(denial.metric_label());
        }
        drop(step);
        let metrics = &*self.metrics;
        match decision {
            Ok(verified) => {
                if verified.cached {
                    metrics.token_cache_hits.inc();
                } else {
                    metrics.token_cache_misses.inc();
                }
                ctx.auth = "allowed";
                if let Some(PartnerOf::Configured(name)) = &verified.token.grant.partner {
                    ctx.partner = ctx.gw.limits.partner_index(name);
                }
                ctx.grant = Some(verified.token.grant);
                metrics.count_auth_decision("allowed");
                self.admit(session, ctx).await
            }
            Err(denial) => {
                ctx.auth = denial.metric_label();
                metrics.count_auth_decision(ctx.auth);
                let reply = denial.reply(ctx.gw.config.issuer.as_str());
                if ctx.head.has_body() {
                    // the body stays unread: do not let its bytes be taken for the next request
                    session.set_keepalive(None);
                }
                self.reply(session, &reply).await
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if end_of_stream {
            if let Some(conn) = &ctx.conn {
                conn.0.body_complete();
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let upstream = &ctx.gw.upstreams[route.upstream];
        if ctx.fresh_retry {
            if let Some(addr) = ctx.last_server() {
                // A pooled connection to this server was dead before the request went out: the
                // server is not at fault, so it is tried again, on a connection of its own (a
                // group key no pooled connection has), and the attempt is not counted.
                ctx.fresh_retry = false;
                let mut peer = upstream.peer(addr);
                peer.group_key = self.fresh_group.fetch_add(1, Ordering::Relaxed);
                return Ok(Box::new(peer));
            }
        }
        let tried: Vec<SocketAddr> = ctx.tried().collect();
        let Some(addr) = upstream.select(&tried) else {
            self.metrics
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
        strict::normalize_upstream(upstream_request, &ctx.head, &ctx.gw.own_host)?;
        if let Some(trace) = &ctx.trace {
            let call = trace.call("upstream");
            if let Some(server) = ctx.last_server().filter(|_| call.exporting()) {
                call.set(opentelemetry::KeyValue::new("server.address", server.to_string()));
            }
            trace.propagate(&call, upstream_request)?;
            ctx.upstream_call = Some(call);
        }
        if ctx.head.has_identity_headers() || ctx.head.has_underscored_names() {
            // only the gateway says who is calling: every `X-OADA-*` a client sent goes, and so
            // do names with underscores (`X_OADA_User_Id` reads as `X-OADA-User-Id` to CGI, WSGI
            // and Rack upstreams), as nginx drops them by default
            strict::remove_client_identity(upstream_request, self.head_limits.pass_underscores);
        }
        if let Some(route) = ctx.route() {
            if !route.forward_authorization {
                upstream_request.remove_header(&http::header::AUTHORIZATION);
            }
        }
        if let Some(grant) = &ctx.grant {
            upstream_request.insert_header(CLIENT_ID_HEADER, grant.client_id_header.clone())?;
            upstream_request.insert_header(SCOPE_HEADER, grant.scope_header.clone())?;
            if let Some(user) = &grant.user_id_header {
                upstream_request.insert_header(USER_ID_HEADER, user.clone())?;
            }
            if let Some(partner) = &grant.partner_header {
                upstream_request.insert_header(PARTNER_HEADER, partner.clone())?;
            }
            upstream_request.insert_header(ISSUER_HEADER, grant.issuer_header.clone())?;
        }
        // never forward a query-string token
        if ctx.gw.authorizer.allows_query_token() {
            if let Some(query) = upstream_request.uri.query().filter(|q| q.contains("access_token")) {
                let stripped = crate::auth::bearer::strip_query_token(query);
                let path = upstream_request.uri.path().to_string();
                let uri = if stripped.is_empty() { path } else { format!("{path}?{stripped}") };
                upstream_request.set_uri(uri.parse().map_err(|_| Error::explain(ErrorType::InternalError, "rebuilt URI"))?);
            }
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            let prior = ctx.head.has_forwarded_for().then(|| upstream_request.headers.get(X_FORWARDED_FOR)).flatten();
            let forwarded = match prior.and_then(|v| v.to_str().ok()) {
                Some(prior) => http::HeaderValue::from_str(&format!("{prior}, {client}"))
                    .map_err(|_| Error::explain(ErrorType::InternalError, "X-Forwarded-For"))?,
                // the same on every request of the connection: made once
                None => match &ctx.conn {
                    Some(conn) => conn.0.forwarded_for(client),
                    None => crate::downstream::stream::forwarded_for(client),
                },
            };
            upstream_request.insert_header(X_FORWARDED_FOR, forwarded)?;
        }
        let proto = if ctx.gw.config.tls.is_some() { "https" } else { "http" };
        upstream_request.insert_header("X-Forwarded-Proto", proto)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(call) = ctx.upstream_call.as_ref().filter(|c| c.exporting()) {
            call.set(opentelemetry::KeyValue::new("http.response.status_code", i64::from(upstream_response.status.as_u16())));
        }
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS && !ctx.head.asks_upgrade() {
            let mut e = Error::explain(UNSOLICITED_UPGRADE, "the upstream switched protocols unasked");
            e.as_up();
            return Err(e);
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let retryable = client_reused
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && ctx.fresh_retries < MAX_FRESH_RETRIES;
        if retryable {
            e.retry.decide_reuse(true);
        } else {
            e.set_retry(false);
        }
        let retry = e.retry();
        if let Some(route) = ctx.route() {
            if *e.esource() == ErrorSource::Upstream {
                let kind = if retry { "reused_connection" } else { failure_kind(e.etype()) };
                self.metrics
                    .upstream_failures
                    .with_label_values(&[ctx.gw.upstreams[route.upstream].name(), kind])
                    .inc();
            }
        }
        if retry {
            ctx.fresh_retry = true;
            ctx.fresh_retries += 1;
        }
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(route) = ctx.route() {
            let upstream = &ctx.gw.upstreams[route.upstream];
            let kind = if matches!(e.etype(), ErrorType::ConnectTimedout) { "timeout" } else { "connect" };
            self.metrics
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
        let upstream = ctx
            .route()
            .map(|r| ctx.gw.upstreams[r.upstream].name().to_string())
            .unwrap_or_default();
        let body_timed_out = ctx.conn.as_ref().is_some_and(|c| c.0.body_timed_out());
        let reply = match (e.esource(), e.etype()) {
            (ErrorSource::Downstream, _) if body_timed_out => {
                let deadline = ctx.conn.as_ref().map_or(0, |c| c.0.body_timeout().as_secs());
                Some(Reply::error(
                    408,
                    "invalid_request",
                    format!("the request body did not arrive within {deadline}s"),
                ))
            }
            (_, ErrorType::HTTPStatus(code)) => Some(Reply::error(*code, "error", "the request failed")),
            (_, ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
                Some(Reply::error(504, "gateway_timeout", format!("upstream {upstream} did not answer in time")))
            }
            (_, t) if *t == UNSOLICITED_UPGRADE => Some(Reply::error(
                502,
                "bad_gateway",
                format!("upstream {upstream} switched protocols without being asked"),
            )),
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
        // the connection is not reused after a failure: say so, so that clients do not send
        // their next request into a closing socket
        session.set_keepalive(None);
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

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        crate::redact::request_summary(req.method.as_str(), req.uri.path())
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // The client's own failures (gone, too slow, garbage) are in the access log and metrics;
        // logging each at error level would let any client fill the logs.
        *error.esource() == ErrorSource::Downstream
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        if let Some(call) = ctx.upstream_call.take() {
            if let Some(e) = e.filter(|e| *e.esource() == ErrorSource::Upstream) {
                call.fail(e.etype().as_str());
            }
        }
        if let Some(trace) = &mut ctx.trace {
            if trace.exporting() {
                let mut attributes = Vec::new();
                if let Some(grant) = &ctx.grant {
                    attributes.push(opentelemetry::KeyValue::new("oada.client_id", grant.client_id.to_string()));
                    if let Some(p) = &grant.partner {
                        attributes.push(opentelemetry::KeyValue::new("oada.partner", p.name().to_string()));
                    }
                }
                attributes.push(opentelemetry::KeyValue::new("oada.auth", ctx.auth));
                trace.finish(status, attributes);
            }
        }
        let req = session.req_header();
        let method = method_label(&req.method);
        let label = ctx.label();
        let elapsed = ctx.start.elapsed();
        match ctx.label {
            Label::Route(id) => {
                ctx.gw.route_metrics[id].record(&req.method, status, elapsed);
                if ctx.grant.is_some() {
                    ctx.gw.partner_metrics.record(ctx.partner, id, status, session.body_bytes_sent() as u64);
                }
            }
            Label::Unmatched => ctx.gw.unmatched_metrics.record(&req.method, status, elapsed),
            Label::Hosted(name) => self.metrics.record_request(name, &req.method, status, elapsed),
        }
        if ctx.gw.config.server.access_log {
            let client_id = ctx.grant.as_ref().map(|g| &*g.client_id).unwrap_or("-");
            let partner = ctx
                .grant
                .as_ref()
                .and_then(|g| g.partner_header.as_ref())
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-");
            let server = ctx.last_server().map(|s| s.to_string());
            let trace_id = TraceIdField(ctx.trace.as_ref().map(|t| t.trace_id()));
            tracing::info!(
                target: "oada_gateway::access",
                route = label,
                method,
                path = req.uri.path(),
                status,
                client_id,
                partner,
                upstream = server.as_deref().unwrap_or("-"),
                auth = ctx.auth,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                error = e.map(|e| e.etype().as_str()).unwrap_or(""),
                trace_id = %trace_id,
                "request"
            );
        }
    }
}

/// A request's trace id in the access log (`-` for requests refused before their head was read).
struct TraceIdField(Option<opentelemetry::trace::TraceId>);

impl std::fmt::Display for TraceIdField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => f.write_str(crate::telemetry::hex(&id.to_bytes(), &mut [0; 32])),
            None => f.write_str("-"),
        }
    }
}

/// Reads a request body of at most `limit` bytes; larger bodies get 413 without being read whole.
async fn read_body(session: &mut Session, head: &HeadFacts, limit: usize, deadline: Duration) -> Result<Bytes, Reply> {
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
    if head.expects_continue() {
        session
            .write_continue_response()
            .await
            .map_err(|_| Reply::error(400, "invalid_request", "the request body could not be read"))?;
    }
    let read = async {
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
                    tracing::debug!(error = %crate::redact::text(&e.to_string()), "reading a request body failed");
                    return Err(Reply::error(400, "invalid_request", "the request body could not be read"));
                }
            }
        }
    };
    let result = match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(Reply::error(
            408,
            "invalid_request",
            format!("the request body did not arrive within {}ms", deadline.as_millis()),
        )),
    };
    if result.is_err() {
        // whatever is left of the body must not be read as the next request
        session.set_keepalive(None);
    }
    result
}

/// The `kind` label of `oada_gateway_upstream_failures_total` for an error after connecting.
fn failure_kind(etype: &ErrorType) -> &'static str {
    match etype {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectionClosed => "closed",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => "invalid_response",
        t if *t == UNSOLICITED_UPGRADE => "invalid_response",
        ErrorType::ReadError => "read_error",
        ErrorType::WriteError => "write_error",
        _ => "other",
    }
}
