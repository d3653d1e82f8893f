//! Distributed tracing: a client's W3C trace continued through the gateway to the upstream, and
//! the gateway's spans received by a real OTLP/HTTP receiver (protobuf, decoded with the
//! `opentelemetry-proto` types).

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One received span, as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i32,
    attributes: Vec<(String, String)>,
    service: String,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// An OTLP/HTTP trace receiver on a loopback port.
struct OtlpReceiver {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

fn any_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let collected = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let collected = collected.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let collected = collected.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces"
                                && req.headers().get("content-type").is_some_and(|c| c == "application/x-protobuf");
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let status = match ExportTraceServiceRequest::decode(body.as_ref()) {
                                Ok(export) if ok => {
                                    let mut out = collected.lock().unwrap();
                                    for rs in export.resource_spans {
                                        let service = rs
                                            .resource
                                            .iter()
                                            .flat_map(|r| r.attributes.iter())
                                            .find(|a| a.key == "service.name")
                                            .map(|a| any_value(&a.value))
                                            .unwrap_or_default();
                                        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                                            out.push(Received {
                                                name: span.name,
                                                trace_id: hex(&span.trace_id),
                                                span_id: hex(&span.span_id),
                                                parent_span_id: hex(&span.parent_span_id),
                                                kind: span.kind,
                                                attributes: span.attributes.iter().map(|a| (a.key.clone(), any_value(&a.value))).collect(),
                                                service: service.clone(),
                                            });
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("Content-Type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        OtlpReceiver { addr, spans, task }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_client_s_trace_reaches_the_upstream_and_the_gateway_s_spans_reach_the_collector() {
    let receiver = OtlpReceiver::start().await;
    let upstream = Upstream::start().await;
    let body = format!(
        "tracing:\n  otlp_endpoint: http://{}/v1/traces\n  service_name: gateway-under-test\nclients:\n  - name: moisturemapper\n    client_id: mm-1\n    client_secret_env: MM_SECRET\n    scopes: [weather.observations:read]\nupstreams:\n  api:\n    servers: [{}]\n    health_check: {{type: none}}\nroutes:\n  - path: /observations\n    scopes: [weather.observations:read]\n    upstream: api\n",
        receiver.addr, upstream.addr
    );
    let gw = GatewayBuilder::new(&body)
        .env("MM_SECRET", "mm-secret-0123456789abcdef")
        // the SDK's batch delay (5 s by default), shortened for the test
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start()
        .await;

    // a token from the token endpoint, within the client's trace
    let r = client()
        .post(gw.url("/token"))
        .basic_auth("mm-1", Some("mm-secret-0123456789abcdef"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    // a proxied request in the same trace, with vendor state
    let r = client()
        .get(gw.url("/observations"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests();
    let traceparent = seen[0].header("traceparent").expect("the upstream gets a traceparent").to_string();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"), "the client's trace, sampled: {traceparent}");
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is the gateway's call");
    assert_eq!(seen[0].header("tracestate"), Some("vendor=abc"));

    eventually_within("the spans reach the collector", Duration::from_secs(10), || async {
        let names: Vec<String> = receiver.spans().into_iter().map(|s| s.name).collect();
        ["GET /observations", "authorize", "upstream", "POST oauth:token", "client_authentication", "grant", "sign_access_token"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
    })
    .await;
    let spans = receiver.spans();
    let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}: {spans:#?}"));
    for s in &spans {
        assert_eq!(s.trace_id, CLIENT_TRACE, "every span is in the client's trace: {s:?}");
        assert_eq!(s.service, "gateway-under-test");
    }
    let server = by_name("GET /observations");
    assert_eq!(server.parent_span_id, CLIENT_SPAN, "the gateway's span continues the client's");
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(server.attribute("http.route"), Some("/observations"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
    assert_eq!(server.attribute("oada.partner"), Some("moisturemapper"));
    let call = by_name("upstream");
    assert_eq!(call.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(call.parent_span_id, server.span_id);
    assert_eq!(call.span_id, parts[2], "the upstream's traceparent names the gateway's call span");
    assert_eq!(call.attribute("http.response.status_code"), Some("200"));
    assert_eq!(by_name("authorize").parent_span_id, server.span_id);
    let token_span = by_name("POST oauth:token");
    for step in ["client_authentication", "grant", "sign_access_token"] {
        assert_eq!(by_name(step).parent_span_id, token_span.span_id, "{step} is a step of the token request");
    }
    assert_eq!(by_name("grant").attribute("oauth.grant_type"), Some("client_credentials"));

    // the access log names the trace
    let logs = gw.logs();
    assert!(logs.lines().any(|l| l.contains("request") && l.contains(&format!("trace_id={CLIENT_TRACE}"))), "{logs}");
}

#[tokio::test]
async fn without_an_exporter_a_trace_is_still_started_and_propagated() {
    let upstream = Upstream::start().await;
    let body = format!(
        "upstreams:\n  api:\n    servers: [{}]\n    health_check: {{type: none}}\nroutes:\n  - path: /\n    auth: none\n    upstream: api\n",
        upstream.addr
    );
    let gw = GatewayBuilder::new(&body).start().await;
    assert_eq!(client().get(gw.url("/a")).send().await.unwrap().status(), 200);
    assert_eq!(
        client()
            .get(gw.url("/b"))
            .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let seen = upstream.requests();
    let started = seen[0].header("traceparent").expect("a trace is started").to_string();
    assert!(!started.contains(CLIENT_TRACE) && started.starts_with("00-") && started.len() == 55, "{started}");
    let new_trace = started.split('-').nth(1).unwrap().to_string();
    let continued = seen[1].header("traceparent").unwrap();
    assert!(continued.starts_with(&format!("00-{CLIENT_TRACE}-")) && continued.ends_with("-00"), "the flags are kept: {continued}");
    let logs = gw.logs();
    assert!(logs.contains(&format!("trace_id={new_trace}")), "the access log names the started trace");
}
