#!/usr/bin/env python3
"""Side-by-side load benchmark on loopback: the same static JSON upstream (an nginx process)
behind nothing, nginx (plain reverse proxy), HAProxy (jwt_verify RS256 + exp + scope) and
oada-gateway (token + scope; one token reused, then 10,000 tokens in rotation; and a route with
`auth: none`, i.e. Pingora plus the gateway's routing without a token check), driven by wrk at the
same connection count, in alternating rounds. Every target receives the identical request, with
the same `Authorization: Bearer` header. Then the same targets at one fixed offered load (paced
wrk connections) to compare latency where none is saturated, /token throughput, and the
gateway's RSS with 1,000,000 distinct cached tokens.

Every proxy runs one worker pinned to CPU 0; wrk and the upstream share CPU 1. Each run records
the proxy's CPU use (and so its CPU time per request), so a saturated load generator cannot pass
for a slow proxy.

Run through `bash benches/load.sh` (options: --quick, --rounds N, --duration S, --connections C,
--skip-rss). Writes target/load-bench/summary.json.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "load-bench"
GATEWAY = ROOT / "target" / "release" / "oada-gateway"
FIXTURES = ROOT / "target" / "release" / "examples" / "bench_fixtures"
LUA = Path(__file__).resolve().parent
PROXY_CPU = "0"
DRIVER_CPU = "1"
EXTERNAL = "https://auth.example.com"
BODY = '{"station":"ames-1","observed_at":1795417200,"air_temperature_c":21.4,"soil_moisture_vwc":0.27,"rainfall_mm":0.0}'


def log(msg):
    print(msg, flush=True)


def ensure_tools():
    wanted = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk", "taskset": "util-linux", "redis-server": "redis-server"}
    missing = [pkg for tool, pkg in wanted.items() if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        log(f"installing {' '.join(missing)} from Debian's packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def tool(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def build():
    log("building oada-gateway and the fixture tool (release)")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--bin", "oada-gateway", "--example", "bench_fixtures"],
        cwd=ROOT, check=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(admin_port, timeout=15):
    """Until the gateway's /readyz answers 200 (its store and upstreams ready)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz").status == 200:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway on admin port {admin_port} did not become ready")


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proc:
    def __init__(self, name, cmd, cpu=None, cwd=None):
        self.name = name
        self.log_path = OUT / f"{name}.log"
        full = (["taskset", "-c", cpu] if cpu else []) + [str(c) for c in cmd]
        self.proc = subprocess.Popen(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))

    @property
    def pid(self):
        return self.proc.pid

    def cpu_seconds(self):
        """User + system CPU time of the process and its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fixtures(*args):
    out = subprocess.run([FIXTURES, *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout


def external_issuer_fixture(work):
    """An external issuer for `issuers:` (keys from a jwks_file) and one token of it: signed with
    the gateway's own RS256 key under another `iss`, so that a comparison with the gateway's own
    tokens measures the external-issuer path alone. Returns (config lines, token)."""
    fixtures("jwks", work / "gw-rs256.pem", "RS256", work / "external-jwks.json")
    fixtures("tokens", work / "gw-rs256.pem", "RS256", EXTERNAL, 1, work / "external-tokens.txt")
    conf = f"issuers:\n  - {{issuer: '{EXTERNAL}', jwks_file: '{work / 'external-jwks.json'}', audiences: ['{EXTERNAL}'], algorithms: [RS256]}}\n"
    return conf, (work / "external-tokens.txt").read_text().splitlines()[0]


def latency_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url, connections, duration, script=None, script_args=(), headers=()):
    cmd = ["taskset", "-c", DRIVER_CPU, tool("wrk"), "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *map(str, script_args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "socket_errors": sum(map(int, m.groups())) if (m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)) else 0,
    }
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+\w+)", out, re.M)
        result[f"p{pct}_ms"] = latency_ms(m.group(1))
    return result


def nginx_conf(path, listen, body=None, upstream=None):
    if body is not None:
        location = f"default_type application/json; return 200 '{body}';"
        upstream_block = ""
    else:
        upstream_block = f"upstream up {{ server 127.0.0.1:{upstream}; keepalive 128; }}"
        location = 'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
    path.write_text(f"""
worker_processes 1;
daemon off;
master_process off;
pid {path.with_suffix('.pid')};
error_log {path.with_suffix('.err')} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  {upstream_block}
  server {{
    listen 127.0.0.1:{listen} backlog=4096;
    location / {{ {location} }}
  }}
}}
""")


def haproxy_conf(path, listen, upstream, pubkey):
    deny = "content-type application/json string '{\"error\":\"invalid_token\"}'"
    path.write_text(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend api
  bind 127.0.0.1:{listen}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request return status 401 {deny} unless {{ var(txn.bearer) -m found }}
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request return status 401 {deny} unless {{ var(txn.alg) -m str RS256 }}
  http-request return status 401 {deny} unless {{ var(txn.bearer),jwt_verify(txn.alg,"{pubkey}") -m int 1 }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request return status 401 {deny} if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  http-request set-var(txn.scope) var(txn.bearer),jwt_payload_query('$.scope')
  http-request return status 403 content-type application/json string '{{"error":"insufficient_scope"}}' unless {{ var(txn.scope) -m sub weather.observations:read }}
  default_backend weather
backend weather
  server up 127.0.0.1:{upstream}
""")


def gateway_conf(path, listen, admin, key, alg, upstream, threads=1, clients="", cache=100000, issuer=None, store="", extra=""):
    path.write_text(f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
issuer: {issuer or f"http://127.0.0.1:{listen}"}
{store}
signing_keys:
  - kid: bench
    alg: {alg}
    private_key_file: {key}
token_lifetime: 6h
{clients}
upstreams:
  api:
    servers: [127.0.0.1:{upstream}]
    health_check: {{type: tcp, interval: 5s}}
routes:
  - path: /observations
    scopes: [weather.observations:read]
    upstream: api
  - path: /public
    auth: none
    upstream: api
cache:
  max_entries: {cache}
server:
  threads: {threads}
  access_log: false
  keepalive_requests: 1000000    # as the nginx targets: no reconnects in the middle of a run
limits:
  token: {{rate: unlimited}}      # one load generator on one address
{extra}""")


def measure(target, connections, duration, results):
    proc = target.get("proc")
    cpu_before = proc.cpu_seconds() if proc else 0
    start = time.time()
    r = wrk(target["url"], connections, duration, target.get("script"), target.get("script_args", ()), target.get("headers", ()))
    elapsed = time.time() - start
    if proc:
        cpu = proc.cpu_seconds() - cpu_before
        r["proxy_cpu"] = round(cpu / elapsed, 2)
        r["cpu_us_per_request"] = round(cpu * 1e6 / max(r["requests"], 1), 2)
    results.setdefault(target["name"], []).append(r)
    bad = f", {r['non_2xx']} non-2xx, {r['socket_errors']} socket errors" if r["non_2xx"] or r["socket_errors"] else ""
    cpu = f", proxy CPU {r['proxy_cpu']:.2f} ({r['cpu_us_per_request']:.1f} us/req)" if proc else ""
    log(f"  {target['name']:<28} {r['rps']:>10,.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms{cpu}{bad}")


def paced_rate(paced_summary):
    return statistics.median(s["rps"] for s in paced_summary.values())


def median_of(runs):
    summary = {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50_ms", "p90_ms", "p99_ms")}
    summary["non_2xx"] = sum(run["non_2xx"] for run in runs)
    summary["socket_errors"] = sum(run["socket_errors"] for run in runs)
    if "proxy_cpu" in runs[0]:
        summary["proxy_cpu"] = statistics.median(run["proxy_cpu"] for run in runs)
        summary["cpu_us_per_request"] = statistics.median(run["cpu_us_per_request"] for run in runs)
    summary["runs"] = runs
    return summary


def token_throughput(work, upstream_port, connections, duration):
    """/token with client_credentials + private_key_jwt (EdDSA partner key), distinct jtis."""
    results = {}
    clients = f"""clients:
  - name: loadtest
    client_id: loadtest-client
    registration_file: {work / 'partner.json'}
    scopes: [weather.observations:read]"""
    for alg, key in (("RS256", "gw-rs256.pem"), ("ES256", "gw-es256.pem"), ("EdDSA", "gw-eddsa.pem")):
        port, admin = free_port(), free_port()
        conf = work / f"gateway-token-{alg}.yaml"
        gateway_conf(conf, port, admin, work / key, alg, upstream_port, clients=clients)
        count = 250_000 if alg != "RS256" else 40_000
        bodies = work / f"assertions-{alg}.txt"
        fixtures("assertions", work / "partner.pem", "partner-1", "loadtest-client", f"http://127.0.0.1:{port}/token", count, bodies)
        proc = Proc(f"gateway-token-{alg}", [GATEWAY, "--config", conf], cpu=PROXY_CPU)
        try:
            wait_port(port)
            cpu_before, start = proc.cpu_seconds(), time.time()
            r = wrk(f"http://127.0.0.1:{port}/token", connections, duration, LUA / "token_endpoint.lua", (bodies,))
            r["proxy_cpu"] = round((proc.cpu_seconds() - cpu_before) / (time.time() - start), 2)
            results[alg] = r
            log(f"  /token with {alg} signing      {r['rps']:>10,.0f} tokens/s  p99 {r['p99_ms']:.3f} ms, proxy CPU {r['proxy_cpu']:.2f}, {r['non_2xx']} non-2xx")
        finally:
            proc.stop()
    return results


def rss_with_cached_tokens(work, upstream_port, count):
    port, admin = free_port(), free_port()
    conf = work / "gateway-rss.yaml"
    gateway_conf(conf, port, admin, work / "gw-eddsa.pem", "EdDSA", upstream_port, threads=2, cache=count + count // 10)
    proc = Proc("gateway-rss", [GATEWAY, "--config", conf])
    try:
        wait_port(port)
        baseline = proc.rss_mb()
        log(f"  sending {count:,} requests with distinct tokens (EdDSA) ...")
        flood = json.loads(fixtures("flood", work / "gw-eddsa.pem", "EdDSA", f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/observations", count, 64))
        time.sleep(1)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
        entries = float(re.search(r"^oada_gateway_token_cache_entries (\S+)", metrics, re.M).group(1))
        rss = proc.rss_mb()
        result = {"tokens_sent": count, "failed": flood["failed"], "cache_entries": entries, "rss_baseline_mb": round(baseline, 1),
                  "rss_mb": round(rss, 1), "bytes_per_cached_token": round((rss - baseline) * 1024 * 1024 / max(entries, 1), 1),
                  "flood_seconds": flood["seconds"]}
        log(f"  RSS {rss:.0f} MB with {entries:,.0f} cached tokens (baseline {baseline:.0f} MB; {result['bytes_per_cached_token']:.0f} B per token)")
        return result
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 5 s, RSS with 100,000 tokens")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rss-tokens", type=int, default=1_000_000)
    ap.add_argument("--pace-ms", type=int, default=4, help="same-load phase: pause of each connection between requests")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.rss_tokens = 1, 5, 100_000
    if os.cpu_count() < 2:
        sys.exit("needs at least 2 CPUs (proxy on CPU 0, load generator and upstream on CPU 1)")

    ensure_tools()
    build()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oada-load-"))
    fixtures("keys", work)
    procs = []
    try:
        up = free_port()
        nginx_conf(work / "upstream.conf", up, body=BODY)
        procs.append(Proc("upstream", [tool("nginx"), "-c", work / "upstream.conf", "-p", work], cpu=DRIVER_CPU))
        wait_port(up)

        nx = free_port()
        nginx_conf(work / "nginx-proxy.conf", nx, upstream=up)
        nginx = Proc("nginx-proxy", [tool("nginx"), "-c", work / "nginx-proxy.conf", "-p", work], cpu=PROXY_CPU)
        procs.append(nginx)

        hp = free_port()
        haproxy_conf(work / "haproxy.cfg", hp, up, work / "gw-rs256.pub.pem")
        haproxy = Proc("haproxy", [tool("haproxy"), "-f", work / "haproxy.cfg", "-db"], cpu=PROXY_CPU)
        procs.append(haproxy)

        external_issuer, external_token = external_issuer_fixture(work)
        gw, gw_admin = free_port(), free_port()
        gateway_conf(work / "gateway.yaml", gw, gw_admin, work / "gw-rs256.pem", "RS256", up, cache=100_000, extra=external_issuer)
        gateway = Proc("gateway", [GATEWAY, "--config", work / "gateway.yaml"], cpu=PROXY_CPU)
        procs.append(gateway)

        # the same gateway with its state in Redis (the revocation mirror; no Redis on the hot path)
        rd = free_port()
        procs.append(Proc("redis", [tool("redis-server"), "--port", rd, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], cpu=DRIVER_CPU))
        wait_port(rd)
        gwr, gwr_admin = free_port(), free_port()
        gateway_conf(work / "gateway-redis.yaml", gwr, gwr_admin, work / "gw-rs256.pem", "RS256", up, cache=100_000,
                     issuer=f"http://127.0.0.1:{gw}", store=f"store: {{type: redis, url: 'redis://127.0.0.1:{rd}/0'}}")
        gateway_redis = Proc("gateway-redis", [GATEWAY, "--config", work / "gateway-redis.yaml"], cpu=PROXY_CPU)
        procs.append(gateway_redis)
        for port in (nx, hp, gw, gwr):
            wait_port(port)
        wait_ready(gwr_admin)

        # tokens signed with the gateway's RS256 key; HAProxy verifies the same tokens
        fixtures("tokens", work / "gw-rs256.pem", "RS256", f"http://127.0.0.1:{gw}", 10_000, work / "tokens.txt")
        one_token = (work / "tokens.txt").read_text().splitlines()[0]
        auth = [f"Authorization: Bearer {one_token}"]
        external_auth = [f"Authorization: Bearer {external_token}"]
        targets = [
            {"name": "direct (no proxy)", "url": f"http://127.0.0.1:{up}/observations", "headers": auth},
            {"name": "nginx (no auth)", "url": f"http://127.0.0.1:{nx}/observations", "proc": nginx, "headers": auth},
            {"name": "haproxy jwt_verify", "url": f"http://127.0.0.1:{hp}/observations", "proc": haproxy, "headers": auth},
            {"name": "oada-gateway (auth: none)", "url": f"http://127.0.0.1:{gw}/public", "proc": gateway, "headers": auth},
            {"name": "oada-gateway (1 token)", "url": f"http://127.0.0.1:{gw}/observations", "proc": gateway, "headers": auth},
            {"name": "oada-gateway (1 external issuer's token)", "url": f"http://127.0.0.1:{gw}/observations", "proc": gateway, "headers": external_auth},
            {"name": "oada-gateway (1 token, store: redis)", "url": f"http://127.0.0.1:{gwr}/observations", "proc": gateway_redis, "headers": auth},
            {"name": "oada-gateway (10k tokens)", "url": f"http://127.0.0.1:{gw}/observations", "proc": gateway,
             "script": LUA / "rotate_tokens.lua", "script_args": (work / "tokens.txt",)},
        ]
        # every target must answer 200 before it is measured
        for t in targets:
            req = urllib.request.Request(t["url"], headers=dict(h.split(": ", 1) for h in t.get("headers", [auth[0]])))
            status = urllib.request.urlopen(req).status
            assert status == 200, f"{t['name']} answered {status}"

        log(f"\n{args.rounds} round(s) x {len(targets)} targets, {args.duration} s each, {args.connections} connections, wrk -t1; proxies pinned to CPU {PROXY_CPU}, wrk + upstream to CPU {DRIVER_CPU}")
        results = {}
        for rnd in range(args.rounds):
            log(f"round {rnd + 1}")
            order = targets if rnd % 2 == 0 else list(reversed(targets))
            for t in order:
                wrk(t["url"], args.connections, 2, t.get("script"), t.get("script_args", ()), t.get("headers", ()))  # warm-up
                measure(t, args.connections, args.duration, results)
        summary = {name: median_of(runs) for name, runs in results.items()}

        # latency at one offered load that no target saturates
        paced = {}
        log(f"\nsame offered load: {args.connections} connections, each waiting {args.pace_ms} ms between requests")
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else list(reversed(targets))
            for t in order:
                if "script" in t:
                    continue
                pt = dict(t, script=LUA / "paced.lua", script_args=(args.pace_ms,))
                measure(pt, args.connections, args.duration, paced)
        paced_summary = {name: median_of(runs) for name, runs in paced.items()}

        gw1 = summary["oada-gateway (1 token)"]
        gw10k = summary["oada-gateway (10k tokens)"]
        ratios = {
            "gateway_vs_nginx_rps": gw1["rps"] / summary["nginx (no auth)"]["rps"],
            "gateway_vs_haproxy_rps": gw1["rps"] / summary["haproxy jwt_verify"]["rps"],
            "gateway_10k_vs_haproxy_rps": gw10k["rps"] / summary["haproxy jwt_verify"]["rps"],
            "gateway_p99_minus_nginx_p99_ms_saturated": gw1["p99_ms"] - summary["nginx (no auth)"]["p99_ms"],
            "gateway_p99_minus_nginx_p99_ms_same_load": paced_summary["oada-gateway (1 token)"]["p99_ms"]
            - paced_summary["nginx (no auth)"]["p99_ms"],
            "gateway_cpu_per_request_vs_nginx": gw1["cpu_us_per_request"] / summary["nginx (no auth)"]["cpu_us_per_request"],
            "gateway_cpu_per_request_vs_haproxy": gw1["cpu_us_per_request"] / summary["haproxy jwt_verify"]["cpu_us_per_request"],
            "token_check_cpu_us": gw1["cpu_us_per_request"] - summary["oada-gateway (auth: none)"]["cpu_us_per_request"],
            "redis_vs_memory_cpu_per_request": summary["oada-gateway (1 token, store: redis)"]["cpu_us_per_request"] / gw1["cpu_us_per_request"],
            "external_vs_own_cpu_per_request": summary["oada-gateway (1 external issuer's token)"]["cpu_us_per_request"] / gw1["cpu_us_per_request"],
        }
        log("\n/token throughput (wrk, 5 s, 32 connections)")
        tokens = token_throughput(work, up, 32, 5)
        rss = None
        if not args.skip_rss:
            log(f"\nmemory with {args.rss_tokens:,} distinct cached tokens")
            rss = rss_with_cached_tokens(work, up, args.rss_tokens)
    finally:
        for p in reversed(procs):
            p.stop()

    log(f"\n| target | req/s | p50 ms | p99 ms | proxy CPU | CPU us/req | p50 ms at {paced_rate(paced_summary):,.0f} req/s | p99 ms at that load |")
    log("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        cpu = f"{s['proxy_cpu']:.2f} | {s['cpu_us_per_request']:.1f}" if "proxy_cpu" in s else "- | -"
        p = paced_summary.get(name)
        at_load = f"{p['p50_ms']:.3f} | {p['p99_ms']:.3f}" if p else "- | -"
        log(f"| {name} | {s['rps']:,.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {cpu} | {at_load} |")
    log(f"\ngateway / nginx req/s: {ratios['gateway_vs_nginx_rps']:.2f}   gateway / haproxy req/s: {ratios['gateway_vs_haproxy_rps']:.2f}   "
        f"(10k tokens / haproxy: {ratios['gateway_10k_vs_haproxy_rps']:.2f})")
    log(f"CPU per request, gateway / nginx: {ratios['gateway_cpu_per_request_vs_nginx']:.2f}   gateway / haproxy: {ratios['gateway_cpu_per_request_vs_haproxy']:.2f}   "
        f"token check: {ratios['token_check_cpu_us']:+.1f} us/req over the same gateway with auth: none")
    log(f"CPU per request, store: redis / store: memory: {ratios['redis_vs_memory_cpu_per_request']:.3f}   "
        f"external issuer's token / own token: {ratios['external_vs_own_cpu_per_request']:.3f}")
    log(f"gateway p99 - nginx p99: {ratios['gateway_p99_minus_nginx_p99_ms_same_load']:+.3f} ms at the same load "
        f"({ratios['gateway_p99_minus_nginx_p99_ms_saturated']:+.3f} ms saturated)")
    machine = {"cpus": os.cpu_count(), "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?"),
               "kernel": os.uname().release}
    versions = {
        "nginx": subprocess.run([tool("nginx"), "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": subprocess.run([tool("haproxy"), "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "wrk": (subprocess.run([tool("wrk"), "-v"], capture_output=True, text=True).stdout.splitlines() or ["wrk"])[0],
    }
    report = {"machine": machine, "versions": versions, "settings": vars(args), "summary": summary,
              "same_load": paced_summary, "ratios": ratios,
              "token_endpoint": tokens, "rss": rss, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (OUT / "summary.json").write_text(json.dumps(report, indent=2))
    log(f"\nwrote {OUT / 'summary.json'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
