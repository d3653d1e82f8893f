#!/usr/bin/env python3
"""Soak benchmark: the release gateway in front of a static upstream, for several minutes, under
 - mixed traffic from wrk (valid tokens, wrong scopes, forged and missing tokens, traversal
   attempts, junk registrations and token requests; see mixed.lua), in back-to-back windows;
 - a slowloris: a few hundred connections trickling header bytes, replaced as they are closed;
 - connection churn: connections opened and dropped without a request.
After each window it samples the gateway's RSS, its open file descriptors and the window's p99,
so that a leak (memory, sockets) or a degradation over time shows as a trend. The run passes when
RSS and open files at the end stay within a margin of the first window's.

Run through `bash benches/soak.sh` (options: --minutes M, --window S, --slowloris N).
Writes target/soak-bench/summary.json.
"""
import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))
import run as load  # noqa: E402  (the load benchmark's helpers: build, processes, wrk, fixtures)

OUT = load.ROOT / "target" / "soak-bench"


def slowloris(port, count, stop, stats):
    """Keeps `count` connections trickling one header byte every second or so."""
    conns = []
    while not stop.is_set():
        while len(conns) < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET /observations HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
                conns.append(s)
                stats["opened"] += 1
            except OSError:
                stats["refused"] += 1
                time.sleep(0.05)
        alive = []
        for s in conns:
            try:
                s.sendall(b"a")
                alive.append(s)
            except OSError:
                stats["closed_by_gateway"] += 1
                s.close()
        conns = alive
        stop.wait(1.0)
    for s in conns:
        s.close()


def churn(port, stop, stats):
    """Opens and drops connections without sending anything, and sends garbage heads."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if random.random() < 0.5:
                s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
            s.close()
            stats["churned"] += 1
        except OSError:
            pass
        stop.wait(0.01)


def open_fds(pid):
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--window", type=int, default=10, help="seconds per wrk window")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--slowloris", type=int, default=300)
    args = ap.parse_args()

    load.ensure_tools()
    load.build()
    load.OUT.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oada-soak-"))
    load.fixtures("keys", work)
    procs = []
    stop = threading.Event()
    stats = {"opened": 0, "refused": 0, "closed_by_gateway": 0, "churned": 0}
    samples = []
    try:
        up = load.free_port()
        load.nginx_conf(work / "upstream.conf", up, body=load.BODY)
        procs.append(load.Proc("soak-upstream", [load.tool("nginx"), "-c", work / "upstream.conf", "-p", work], cpu=load.DRIVER_CPU))
        load.wait_port(up)
        gw, admin = load.free_port(), load.free_port()
        conf = work / "gateway.yaml"
        load.gateway_conf(conf, gw, admin, work / "gw-es256.pem", "ES256", up, threads=1)
        # hostile settings as a production gateway would have them, shortened to show in minutes
        text = conf.read_text().replace("  keepalive_requests: 1000000    # as the nginx targets: no reconnects in the middle of a run\n",
                                        "  header_timeout: 5s\n  keepalive_timeout: 20s\n  max_connections_per_address: 2000\n")
        conf.write_text(text.replace("  token: {rate: unlimited}      # one load generator on one address\n", "  token: {rate: 200/s, burst: 400}\n"))
        gateway = load.Proc("soak-gateway", [load.GATEWAY, "--config", conf], cpu=load.PROXY_CPU)
        procs.append(gateway)
        load.wait_port(gw)
        load.fixtures("tokens", work / "gw-es256.pem", "ES256", f"http://127.0.0.1:{gw}", 2000, work / "tokens.txt")

        threads = [threading.Thread(target=slowloris, args=(gw, args.slowloris, stop, stats), daemon=True),
                   threading.Thread(target=churn, args=(gw, stop, stats), daemon=True)]
        for t in threads:
            t.start()
        deadline = time.time() + args.minutes * 60
        load.log(f"soak: {args.minutes} min, windows of {args.window} s, {args.connections} wrk connections, {args.slowloris} slowloris connections")
        load.log("| t (s) | req/s | p99 ms | non-2xx | RSS MB | open fds | slowloris closed |")
        load.log("|---:|---:|---:|---:|---:|---:|---:|")
        start = time.time()
        while time.time() < deadline:
            r = load.wrk(f"http://127.0.0.1:{gw}/observations", args.connections, args.window,
                         Path(__file__).parent / "mixed.lua", (work / "tokens.txt",))
            sample = {"t": round(time.time() - start), "rps": r["rps"], "p99_ms": r["p99_ms"], "non_2xx": r["non_2xx"],
                      "rss_mb": round(gateway.rss_mb(), 1), "open_fds": open_fds(gateway.pid), **dict(stats)}
            samples.append(sample)
            load.log(f"| {sample['t']} | {r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {sample['rss_mb']} | {sample['open_fds']} | {stats['closed_by_gateway']} |")
            if gateway.proc.poll() is not None:
                sys.exit("the gateway exited during the soak")
    finally:
        stop.set()
        for p in reversed(procs):
            p.stop()
    first, last = samples[0], samples[-1]
    peak_rss = max(s["rss_mb"] for s in samples)
    verdict = {
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
        "peak_rss_mb": peak_rss,
        "fd_growth": last["open_fds"] - first["open_fds"],
        "p99_first_ms": first["p99_ms"],
        "p99_last_ms": last["p99_ms"],
        "stable": last["rss_mb"] <= first["rss_mb"] * 1.25 + 16 and last["open_fds"] <= first["open_fds"] + 100,
    }
    load.log(f"\nRSS {first['rss_mb']} -> {last['rss_mb']} MB (peak {peak_rss}), open fds {first['open_fds']} -> {last['open_fds']}, "
             f"p99 {first['p99_ms']:.2f} -> {last['p99_ms']:.2f} ms; slowloris connections closed by the gateway: {stats['closed_by_gateway']}")
    load.log("stable" if verdict["stable"] else "NOT stable: RSS or open files grew")
    (OUT / "summary.json").write_text(json.dumps({"settings": vars(args), "samples": samples, "verdict": verdict}, indent=2))
    load.log(f"wrote {OUT / 'summary.json'}")
    sys.exit(0 if verdict["stable"] else 1)


if __name__ == "__main__":
    main()
