//! Distributed tracing: every request is part of a W3C Trace Context trace, continued from the
//! client's `traceparent` or started here, and the upstream gets a `traceparent` of the same
//! trace (and the client's `tracestate`). The trace id is in the access log. With
//! `tracing.otlp_endpoint` set, the gateway's spans (the request, its authorization, the
//! upstream call, the token endpoint's steps) are exported over OTLP/HTTP, in batches, off the
//! request path.
//!
//! Parsing and writing the headers is the OpenTelemetry SDK's `TraceContextPropagator`; spans are
//! the SDK's, exported by `opentelemetry-otlp`.

use crate::config::TracingConfig;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider};
use pingora::http::RequestHeader;

/// The OTLP exporter and the tracer that feeds it.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Starts exporting to `config.otlp_endpoint`; `None` when no endpoint is configured.
    pub fn start(config: &TracingConfig) -> Result<Option<Telemetry>, String> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| format!("cannot set up the OTLP exporter for {endpoint}: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("oada-gateway");
        tracing::info!(endpoint = %endpoint, sample_ratio = config.sample_ratio, "exporting traces over OTLP");
        Ok(Some(Telemetry { provider, tracer }))
    }

    /// Exports what is still buffered (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}

/// Reads the trace context headers of a request.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the trace context headers of the upstream request.
struct Upstream<'a> {
    request: &'a mut RequestHeader,
    failed: bool,
}

impl Injector for Upstream<'_> {
    fn set(&mut self, key: &str, value: String) {
        // an empty `tracestate` is sent as none
        if !value.is_empty() && self.request.insert_header(key.to_string(), value).is_err() {
            self.failed = true;
        }
    }
}

/// A request's place in a trace.
pub struct RequestTrace {
    trace_id: TraceId,
    flags: TraceFlags,
    state: TraceState,
    /// With the gateway's server span, when exporting.
    server: Option<(SdkTracer, Context)>,
}

/// Part of a request's work; its span (when exporting) ends when dropped.
pub struct Step {
    span_id: SpanId,
    cx: Option<Context>,
}

impl Step {
    /// Marks the step as failed (`why` is not secret: it is exported).
    pub fn fail(&self, why: &str) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(why.to_string()));
        }
    }

    pub fn set(&self, attribute: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(attribute);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

impl RequestTrace {
    /// Continues the client's trace (when `carries_context` and its `traceparent` is valid) or
    /// starts one; with `telemetry`, opens the gateway's server span `name`.
    pub fn begin(telemetry: Option<&Telemetry>, headers: &HeaderMap, carries_context: bool, method: &http::Method, path: &str) -> RequestTrace {
        let parent = if carries_context {
            let cx = TraceContextPropagator::new().extract(&Headers(headers));
            let remote = cx.span().span_context().clone();
            remote.is_valid().then_some((cx, remote))
        } else {
            None
        };
        match telemetry {
            Some(t) => {
                let parent_cx = parent.as_ref().map(|(cx, _)| cx.clone()).unwrap_or_default();
                // named after the route once it is known (see `name_after`)
                let span = t
                    .tracer
                    .span_builder(method.as_str().to_string())
                    .with_kind(SpanKind::Server)
                    .with_attributes([
                        KeyValue::new("http.request.method", method.as_str().to_string()),
                        KeyValue::new("url.path", path.to_string()),
                    ])
                    .start_with_context(&t.tracer, &parent_cx);
                let sc = span.span_context().clone();
                RequestTrace {
                    trace_id: sc.trace_id(),
                    flags: sc.trace_flags(),
                    state: sc.trace_state().clone(),
                    server: Some((t.tracer.clone(), parent_cx.with_span(span))),
                }
            }
            None => match parent {
                Some((_, remote)) => RequestTrace {
                    trace_id: remote.trace_id(),
                    flags: remote.trace_flags(),
                    state: remote.trace_state().clone(),
                    server: None,
                },
                None => RequestTrace {
                    trace_id: RandomIdGenerator::default().new_trace_id(),
                    // nothing here records it
                    flags: TraceFlags::default(),
                    state: TraceState::default(),
                    server: None,
                },
            },
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// Are this request's spans exported?
    pub fn exporting(&self) -> bool {
        self.server.is_some()
    }

    /// Names the server span after the route (`GET /observations`), and records the route.
    pub fn name_after(&self, method: &http::Method, route: &str) {
        if let Some((_, cx)) = &self.server {
            let span = cx.span();
            span.update_name(format!("{} {route}", method.as_str()));
            span.set_attribute(KeyValue::new("http.route", route.to_string()));
        }
    }

    /// A step of the request: an internal span when exporting, nothing otherwise.
    pub fn step(&self, name: &'static str, kind: SpanKind) -> Step {
        match &self.server {
            Some((tracer, cx)) => {
                let span = tracer.span_builder(name).with_kind(kind).start_with_context(tracer, cx);
                Step {
                    span_id: span.span_context().span_id(),
                    cx: Some(cx.with_span(span)),
                }
            }
            None => Step {
                span_id: SpanId::INVALID,
                cx: None,
            },
        }
    }

    /// A call out of the gateway (a client span when exporting); it always has a span id, the
    /// parent the called server sees.
    pub fn call(&self, name: &'static str) -> Step {
        let mut step = self.step(name, SpanKind::Client);
        if step.cx.is_none() {
            step.span_id = RandomIdGenerator::default().new_span_id();
        }
        step
    }

    /// Sets `traceparent` (and `tracestate`) of the upstream request: this trace, with `call` (the
    /// upstream step) as the parent.
    pub fn propagate(&self, call: &Step, request: &mut RequestHeader) -> pingora::Result<()> {
        let sc = SpanContext::new(self.trace_id, call.span_id, self.flags, false, self.state.clone());
        let mut upstream = Upstream { request, failed: false };
        TraceContextPropagator::new().inject_context(&Context::new().with_remote_span_context(sc), &mut upstream);
        if upstream.failed {
            return Err(pingora::Error::explain(pingora::ErrorType::InternalError, "trace context header"));
        }
        Ok(())
    }

    /// Ends the server span with the response's status.
    pub fn finish(&mut self, status: u16, attributes: Vec<KeyValue>) {
        if let Some((_, cx)) = self.server.take() {
            let span = cx.span();
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
            span.set_attributes(attributes);
            if status >= 500 || status == 0 {
                span.set_status(Status::error("the request failed"));
            }
            span.end();
        }
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        if let Some((_, cx)) = &self.server {
            cx.span().end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_s_trace_is_continued_and_passed_on() {
        let incoming = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "vendor=abc"),
        ]);
        let trace = RequestTrace::begin(None, &incoming, true, &http::Method::GET, "/x");
        assert_eq!(trace.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let call = trace.call("upstream");
        let mut upstream = RequestHeader::build("GET", b"/x", None).unwrap();
        trace.propagate(&call, &mut upstream).unwrap();
        let sent = upstream.headers.get("traceparent").unwrap().to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent}");
        assert!(sent.ends_with("-01"), "the sampled flag is kept: {sent}");
        assert!(!sent.contains("00f067aa0ba902b7"), "the parent is the gateway's call, not the client");
        assert_eq!(upstream.headers.get("tracestate").unwrap(), "vendor=abc");
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_a_new_trace() {
        for incoming in [
            headers(&[]),
            headers(&[("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")]),
            headers(&[("traceparent", "garbage"), ("tracestate", "vendor=abc")]),
            headers(&[("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")]),
        ] {
            let trace = RequestTrace::begin(None, &incoming, true, &http::Method::GET, "/x");
            assert_ne!(trace.trace_id(), TraceId::INVALID);
            assert_ne!(trace.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            let mut upstream = RequestHeader::build("GET", b"/x", None).unwrap();
            trace.propagate(&trace.call("upstream"), &mut upstream).unwrap();
            let sent = upstream.headers.get("traceparent").unwrap().to_str().unwrap();
            assert!(sent.starts_with(&format!("00-{}-", trace.trace_id())), "{sent}");
            assert!(upstream.headers.get("tracestate").is_none(), "no state without a valid parent");
        }
    }
}
