//! What operators get besides the gateway: the Grafana dashboard (`deploy/grafana/`) and the
//! Prometheus alerting rules (`deploy/prometheus/`), checked against the real gateway's
//! `/metrics` with Prometheus's own `promtool`. A dashboard or rule naming a metric the gateway
//! does not export would show an empty panel or never fire, silently; these tests make it loud.

use crate::harness::*;
use regex::Regex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MM_SECRET: &str = "mm-secret-0123456789abcdef";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool_available() -> bool {
    Command::new("promtool").arg("--version").output().is_ok()
}

/// Runs `promtool` with `args`, feeding `stdin`; panics with what it printed unless it succeeds.
fn promtool(args: &[&str], stdin: Option<&str>) {
    assert!(
        promtool_available(),
        "the metrics and rules tests need promtool, from Debian's prometheus package (apt-get install prometheus; .ci/run does)"
    );
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    // `check metrics` prints each lint problem and exits 3 (1 when it cannot parse), so the exit
    // status alone says whether anything was found
    assert!(
        status.success(),
        "promtool {} failed ({status}):\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
}

/// The series names an exposition can show, from its `# TYPE` lines: a histogram is only its
/// `_bucket`, `_sum` and `_count` series (a query naming the bare family selects nothing).
fn exported_series(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (family, kind) in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' ')) {
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    names
}

/// The gateway's metric names (and the process collector's) that PromQL `queries` mention.
fn metric_names<'a>(queries: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let name = Regex::new(r"\b(?:oada_gateway|process)_[a-z0-9_]+").unwrap();
    queries
        .into_iter()
        .flat_map(|q| name.find_iter(q).map(|m| m.as_str().to_string()))
        .collect()
}

/// Names in `used` that `exported` lacks.
fn missing(used: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    used.difference(exported).cloned().collect()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(deploy("grafana/oada-gateway.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL query of the dashboard: each target of each panel (also inside collapsed rows),
/// and the query variables. A target without `expr` fails, so that none is skipped unnoticed.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("panel {} has no query", panel["title"])) {
            let expr = target["expr"].as_str().filter(|e| !e.trim().is_empty());
            queries.push(expr.unwrap_or_else(|| panic!("a target of panel {} has no expr", panel["title"])).to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] == "query" {
            // a string, or {query: ...} in newer Grafana versions
            let query = var["query"].get("query").unwrap_or(&var["query"]);
            queries.push(query.as_str().expect("a variable's query").to_string());
        }
    }
    queries
}

fn alert_rules() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let group = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "oada-gateway")
        .expect("a group named oada-gateway");
    group["rules"].as_sequence().unwrap().clone()
}

fn config(upstream: &Upstream, redis: &RedisServer) -> String {
    format!(
        r#"
clients:
  - name: moisturemapper
    client_id: mm-1
    client_secret_env: MM_SECRET
    scopes: [weather.observations:read]
limits:
  token: {{rate: unlimited}}
store:
  type: redis
  url: {redis}
  key_prefix: "test:"
  command_timeout: 300ms
rate_limits:
  - name: per-address
    route: /limited
    per_client_address: true
    rate: 1/m
upstreams:
  api:
    servers: [{up}]
    health_check: {{type: tcp, interval: 200ms}}
  gone:
    servers: [127.0.0.1:{gone}]
    health_check: {{type: none}}
routes:
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
  - path: /public
    auth: none
    upstream: api
  - path: /limited
    auth: none
    upstream: api
  - path: /gone
    auth: none
    upstream: gone
"#,
        redis = redis.url(),
        up = upstream.addr,
        gone = free_port()
    )
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// The gateway's exposition after the situations every panel and alert is about, so that each
/// labelled series exists (the Prometheus client shows a labelled metric only once it has a
/// series): Redis as the store, because the store's latency and errors exist only there.
#[tokio::test]
async fn the_exposition_passes_promtool_and_has_every_metric_the_dashboard_and_alerts_use() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    let gw = GatewayBuilder::new(&config(&upstream, &redis)).env("MM_SECRET", MM_SECRET).start().await;
    let http = client();

    assert_eq!(status(http.get(gw.url("/public"))).await, 200);
    assert_eq!(status(http.get(gw.url("/observations"))).await, 401);
    let signed = gw.token("someone", "weather.observations:read");
    assert_eq!(status(http.get(gw.url("/observations")).bearer_auth(&signed)).await, 200);
    assert_eq!(status(http.get(gw.url("/nowhere"))).await, 404);
    assert_eq!(status(http.get(gw.url("/gone"))).await, 502, "nothing listens there");
    assert_eq!(status(http.get(gw.url("/limited"))).await, 200);
    assert_eq!(status(http.get(gw.url("/limited"))).await, 429);
    let token_request = |secret: &str| {
        http.post(gw.url("/token"))
            .basic_auth("mm-1", Some(secret))
            .form(&[("grant_type", "client_credentials")])
    };
    assert_eq!(status(token_request("wrong-secret")).await, 401);
    let r = token_request(MM_SECRET).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let issued = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(status(http.get(gw.url("/observations")).bearer_auth(&issued)).await, 200);
    // a head over server.max_request_header_bytes (32 KiB): 431 and the connection closed
    let mut big = http.get(gw.url("/public"));
    for i in 0..30 {
        big = big.header(format!("X-F{i}"), "v".repeat(1500));
    }
    assert_eq!(status(big).await, 431);
    // the store going away: the revocation cannot be written
    redis.stop();
    let revoke = http
        .post(gw.url("/revoke"))
        .basic_auth("mm-1", Some(MM_SECRET))
        .form(&[("token", issued.as_str())]);
    assert_eq!(status(revoke).await, 503);

    let exposition = gw.metrics().await;
    promtool(&["check", "metrics"], Some(&exposition));

    let exported = exported_series(&exposition);
    // the check itself: an unknown name, and a histogram's bare family name, are refused
    let wrong = metric_names(["oada_gateway_no_such_metric_total + oada_gateway_request_duration_seconds"]);
    assert_eq!(missing(&wrong, &exported).len(), 2, "{exported:?}");

    let queries = dashboard_queries(&dashboard());
    let used = metric_names(queries.iter().map(String::as_str));
    assert!(used.len() >= 20, "the dashboard's metrics: {used:?}");
    let absent = missing(&used, &exported);
    assert!(absent.is_empty(), "the dashboard queries metrics the gateway does not export: {absent:?}\n{exposition}");

    let exprs: Vec<String> = alert_rules().iter().map(|r| r["expr"].as_str().unwrap().to_string()).collect();
    let used = metric_names(exprs.iter().map(String::as_str));
    assert!(used.len() >= 5, "the alerts' metrics: {used:?}");
    let absent = missing(&used, &exported);
    assert!(absent.is_empty(), "the alerts use metrics the gateway does not export: {absent:?}\n{exposition}");
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let rules = deploy("prometheus/alerts.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()], None);
    promtool(&["test", "rules", deploy("prometheus/alerts_test.yml").to_str().unwrap()], None);
    // what an on-call person needs from each alert, which promtool does not require
    for rule in alert_rules() {
        let name = rule["alert"].as_str().expect("alerting rules only");
        assert!(rule["for"].as_str().is_some(), "{name}: no `for`");
        assert!(
            matches!(rule["labels"]["severity"].as_str(), Some("critical" | "warning")),
            "{name}: severity critical or warning"
        );
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {key}");
        }
    }
}

/// Every dashboard query is PromQL that Prometheus parses, with Grafana's variables filled in
/// (of a variable's `label_values(selector, label)`, the selector): each becomes a recording rule
/// for `promtool check rules`.
#[test]
fn the_dashboard_queries_are_valid_promql() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "oada-gateway");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"datasource"), "a data source variable: {variables:?}");
    // `$__rate_interval` and `$__range` are durations; `$instance`, `$route` fill label regexes.
    // `${1}` (label_replace's group reference) is left alone.
    let range = Regex::new(r"\$__(?:rate_interval|interval|range)\b").unwrap();
    let variable = Regex::new(r"\$[A-Za-z]\w*").unwrap();
    let label_values = Regex::new(r"^label_values\((.+),\s*\w+\)$").unwrap();
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let q = label_values.replace(q.trim(), "$1");
            let q = range.replace_all(&q, "5m");
            json!({"record": format!("dashboard:query_{i}"), "expr": variable.replace_all(&q, ".*")})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML
    let path = write(dir.path(), "dashboard.rules.yml", &json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string());
    promtool(&["check", "rules", path.to_str().unwrap()], None);
}
