//! A small sample weather-station API (grounddata's existing API in the use case), served by
//! `oada-gateway sample-api` and used by the demo. Stations and observations as JSON; it trusts
//! the gateway's `X-OADA-Client-Id` and `X-OADA-Partner` headers for attribution and, when the
//! gateway forwards a person's request (`X-OADA-User-Id`), answers with that person's stations
//! only. It echoes nothing secret.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

struct Station {
    id: &'static str,
    name: &'static str,
    lat: f64,
    lon: f64,
    /// The farmer who owns it (the `sub` of their tokens).
    owner: &'static str,
}

const STATIONS: &[Station] = &[
    Station { id: "ames-1", name: "Ames North", lat: 42.06, lon: -93.62, owner: "frank" },
    Station { id: "lafayette-2", name: "West Lafayette Farm", lat: 40.47, lon: -86.99, owner: "frank" },
    Station { id: "champaign-3", name: "Champaign South", lat: 40.08, lon: -88.24, owner: "grace" },
];

/// The stations a request may see: a person's own, or (a partner's request) all of them.
fn visible(user: Option<&str>) -> impl Iterator<Item = &'static Station> + '_ {
    STATIONS.iter().filter(move |s| user.is_none_or(|u| s.owner == u))
}

fn station_json(s: &Station) -> Value {
    json!({"id": s.id, "name": s.name, "lat": s.lat, "lon": s.lon, "owner": s.owner})
}

/// Deterministic readings for a station and hour, so responses are stable within an hour.
fn observation(station: &Station, hour: u64) -> Value {
    let seed = station.id.bytes().map(u64::from).sum::<u64>() + hour;
    let wobble = |m: u64, span: f64| ((seed * 2654435761 % m) as f64 / m as f64) * span;
    json!({
        "id": format!("{}-{hour}", station.id),
        "station": station.id,
        "observed_at": hour * 3600,
        "air_temperature_c": ((12.0 + wobble(97, 14.0)) * 10.0).round() / 10.0,
        "soil_moisture_vwc": ((0.18 + wobble(89, 0.2)) * 100.0).round() / 100.0,
        "rainfall_mm": (wobble(83, 6.0) * 10.0).round() / 10.0,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

struct State {
    recorded: AtomicU64,
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let client = req
        .headers()
        .get("x-oada-client-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let partner = req
        .headers()
        .get("x-oada-partner")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user = req
        .headers()
        .get("x-oada-user-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user = user.as_deref();
    let hour = crate::ids::unix_now() / 3600;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let response = match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["health"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (Method::GET, ["stations"]) => json_response(
            StatusCode::OK,
            &json!({"stations": visible(user).map(station_json).collect::<Vec<_>>(), "owner": user}),
        ),
        (Method::GET, ["stations", id]) => match visible(user).find(|s| s.id == *id) {
            Some(s) => json_response(StatusCode::OK, &station_json(s)),
            None => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found", "error_description": "no such station"})),
        },
        (Method::GET, ["observations"]) => {
            let observations: Vec<Value> = visible(user)
                .flat_map(|s| (0..3).map(move |h| observation(s, hour - h)))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"observations": observations, "requested_by": client, "partner": partner, "on_behalf_of": user}),
            )
        }
        (Method::GET, ["observations", id]) => {
            let found = visible(user)
                .flat_map(|s| (0..24).map(move |h| observation(s, hour - h)))
                .find(|o| o["id"] == *id);
            match found {
                Some(o) => json_response(StatusCode::OK, &o),
                None => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found", "error_description": "no such observation"})),
            }
        }
        (Method::POST, ["observations"]) => {
            let body = Limited::new(req.into_body(), 64 * 1024).collect().await;
            match body.ok().and_then(|b| serde_json::from_slice::<Value>(&b.to_bytes()).ok()) {
                Some(Value::Object(mut obs)) => {
                    let n = state.recorded.fetch_add(1, Ordering::Relaxed) + 1;
                    obs.insert("id".into(), json!(format!("manual-{n}")));
                    obs.insert("recorded_by".into(), json!(client));
                    json_response(StatusCode::CREATED, &Value::Object(obs))
                }
                _ => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request", "error_description": "send a JSON object"}),
                ),
            }
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found", "error_description": "no such resource"})),
    };
    Ok(response)
}

/// Serves the sample API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let state = Arc::new(State {
        recorded: AtomicU64::new(0),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` and serves the sample API on it.
pub async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "sample weather-station API listening");
    serve(listener).await;
    Ok(())
}
