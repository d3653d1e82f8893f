//! Distributed tracing: every request is part of a W3C Trace Context trace, continued from the
//! client's `traceparent` or started here, and the upstream gets a `traceparent` of the same
//! trace (and the client's `tracestate`). The trace id is in the access log. With
//! `tracing.otlp_endpoint` set, the gateway's spans (the request, its authorization, the
//! upstream call, the token endpoint's steps) are exported over OTLP/HTTP, in batches, off the
//! request path.
//!
//! Reading the headers is the OpenTelemetry SDK's `TraceContextPropagator` (its validation rules
//! are subtle); spans are the SDK's, exported by `opentelemetry-otlp`.

use crate::config::TracingConfig;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, Tracer as _, TracerProvider as _};
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

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// W3C Trace Context caps `tracestate` at 32 members of at most 256 characters; a longer value
/// is not passed on.
const MAX_TRACESTATE_BYTES: usize = 8192;

/// Lower-case hex of `bytes` into `out` (twice as long), as a `&str`; for ids on the request path,
/// where `format!` costs several times as much.
pub fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let out = &mut out[..2 * bytes.len()];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

/// `traceparent` (version 00): `00-<trace id>-<parent span id>-<flags>`, all lower-case hex.
/// Written by hand on the request path: the propagator's `format!` of the same cost 5,000
/// instructions per request, this a few hundred (benches/instructions.sh).
fn traceparent(trace: TraceId, span: SpanId, flags: TraceFlags) -> http::HeaderValue {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&trace.to_bytes(), &mut out[3..35]);
    hex(&span.to_bytes(), &mut out[36..52]);
    hex(&[(flags & TraceFlags::SAMPLED).to_u8()], &mut out[53..55]);
    http::HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

/// A request's place in a trace.
pub struct RequestTrace {
    trace_id: TraceId,
    flags: TraceFlags,
    /// The client's `tracestate`, passed on as it came (only with a valid `traceparent`).
    state: Option<http::HeaderValue>,
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

    /// Is this step exported (worth building attributes for)?
    pub fn exporting(&self) -> bool {
        self.cx.is_some()
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
        let state = parent
            .as_ref()
            .and_then(|_| headers.get("tracestate"))
            .filter(|v| !v.is_empty() && v.len() <= MAX_TRACESTATE_BYTES)
            .cloned();
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
                    state,
                    server: Some((t.tracer.clone(), parent_cx.with_span(span))),
                }
            }
            None => match parent {
                Some((_, remote)) => RequestTrace {
                    trace_id: remote.trace_id(),
                    flags: remote.trace_flags(),
                    state,
                    server: None,
                },
                None => RequestTrace {
                    trace_id: RandomIdGenerator::default().new_trace_id(),
                    // nothing here records it
                    flags: TraceFlags::default(),
                    state: None,
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
        request.insert_header(TRACEPARENT, traceparent(self.trace_id, call.span_id, self.flags))?;
        match &self.state {
            Some(state) => request.insert_header(TRACESTATE, state.clone())?,
            None => {
                if request.headers.contains_key(TRACESTATE) {
                    // state that came without a valid traceparent belongs to no trace
                    request.remove_header(TRACESTATE);
                }
            }
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
    fn traceparent_is_written_as_the_propagator_writes_it() {
        use opentelemetry::propagation::Injector;
        use opentelemetry::trace::{SpanContext, TraceState};
        struct Out(Option<String>);
        impl Injector for Out {
            fn set(&mut self, key: &str, value: String) {
                if key == TRACEPARENT {
                    self.0 = Some(value);
                }
            }
        }
        let ids = RandomIdGenerator::default();
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let (trace, span) = (ids.new_trace_id(), ids.new_span_id());
            let sc = SpanContext::new(trace, span, flags, false, TraceState::default());
            let mut out = Out(None);
            TraceContextPropagator::new().inject_context(&Context::new().with_remote_span_context(sc), &mut out);
            assert_eq!(traceparent(trace, span, flags).to_str().unwrap(), out.0.unwrap());
        }
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
