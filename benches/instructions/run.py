#!/usr/bin/env python3
"""Instructions per proxied request (valgrind callgrind), for the targets of the load benchmark:
oada-gateway with `auth: none`, with token + scope (one token, cache hits), and the same with
`store: redis`. The gateway runs under callgrind with instrumentation off; after a warm-up the
script switches it on, sends exactly N requests on one keep-alive connection, dumps the counters
and divides. Startup and warm-up are not counted.

Run through `bash benches/instructions.sh` (options: --requests N, --binary PATH, --compare PATH).
Writes target/instructions-bench/summary.json.
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))
import run as load  # noqa: E402

OUT = load.ROOT / "target" / "instructions-bench"


def client(port, request, count):
    """Sends `request` `count` times on one keep-alive connection; every answer must be 200."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        pending = b""
        for _ in range(count):
            s.sendall(request)
            while True:
                end = pending.find(b"\r\n\r\n")
                if end >= 0:
                    head = pending[:end].decode("latin-1")
                    length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
                    if len(pending) >= end + 4 + length:
                        status = head.split(" ", 2)[1]
                        if status != "200":
                            raise RuntimeError(f"answered {status}: {head}")
                        pending = pending[end + 4 + length:]
                        break
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("the gateway closed the connection")
                pending += chunk


def measure(binary, work, name, conf, port, admin, request, count):
    out = OUT / f"{name}.callgrind"  # kept for callgrind_annotate
    for stale in glob.glob(f"{out}*"):
        os.remove(stale)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", str(binary), "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "w"),
    )
    try:
        load.wait_port(port, timeout=120)
        load.wait_ready(admin, timeout=120)
        client(port, request, 300)  # warm-up: pools, caches, lazy initialisation
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        started = time.time()
        client(port, request, count)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        elapsed = time.time() - started
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    total = 0
    for dump in glob.glob(f"{out}*"):
        for line in Path(dump).read_text(errors="replace").splitlines():
            if line.startswith("totals:") or line.startswith("summary:"):
                total = max(total, int(line.split()[1]))
                break
    return {"instructions_per_request": round(total / count), "requests": count, "seconds": round(elapsed, 1)}


def run_binary(binary, tag, args, work, up, redis_port):
    load.fixtures("tokens", work / "gw-rs256.pem", "RS256", "http://127.0.0.1:1", 1, work / "tokens.txt")
    results = {}
    variants = (
        ("memory", ""),
        ("redis", f"store: {{type: redis, url: 'redis://127.0.0.1:{redis_port}/0'}}"),
        ("ratelimit", ""),
        ("external", ""),
    )
    for name, store in variants:
        port, admin = load.free_port(), load.free_port()
        conf = work / f"gw-{name}.yaml"
        load.gateway_conf(conf, port, admin, work / "gw-rs256.pem", "RS256", up, issuer="http://127.0.0.1:1", store=store)
        if name == "external":
            external_conf, external = load.external_issuer_fixture(work)
            with conf.open("a") as f:
                f.write(external_conf)
        if name == "ratelimit":
            # one rule every request matches, never reached: the cost of the check itself
            with conf.open("a") as f:
                f.write("rate_limits:\n  - {name: everyone, rate: 1000000/s}\n")
        if name == "memory" and subprocess.run([str(binary), "check", "--config", str(conf)], capture_output=True).returncode != 0:
            # an older build without settings the config names: drop them
            text = conf.read_text()
            text = re.sub(r"(?m)^  keepalive_requests:.*\n|^limits:\n  token:.*\n", "", text)
            conf.write_text(text)
        token = (work / "tokens.txt").read_text().splitlines()[0]
        targets = [("auth: none", "/public", "")]
        if name == "memory":
            targets.append(("token + scope", "/observations", f"Authorization: Bearer {token}\r\n"))
        elif name == "redis":
            targets = [("token + scope, store: redis", "/observations", f"Authorization: Bearer {token}\r\n")]
        elif name == "ratelimit":
            targets = [("token + scope, 1 rate limit", "/observations", f"Authorization: Bearer {token}\r\n")]
        else:
            targets = [("external issuer's token", "/observations", f"Authorization: Bearer {external}\r\n")]
        for label, path, auth in targets:
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
            if name != "memory" and subprocess.run([str(binary), "check", "--config", str(conf)], capture_output=True).returncode != 0:
                continue
            r = measure(binary, work, f"{tag}-{label.replace(' ', '_').replace(':', '').replace(',', '')}", conf, port, admin, request, args.requests)
            results[label] = r
            load.log(f"  {label:<30} {r['instructions_per_request']:>10,} instructions per request")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--binary", default=str(load.GATEWAY))
    ap.add_argument("--compare", help="another oada-gateway binary to count the same way")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("needs valgrind (apt-get install valgrind)")
    load.ensure_tools()
    load.build()
    OUT.mkdir(parents=True, exist_ok=True)
    load.OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oada-instr-"))
    load.fixtures("keys", work)
    procs = []
    report = {}
    try:
        up = load.free_port()
        load.nginx_conf(work / "upstream.conf", up, body=load.BODY)
        procs.append(load.Proc("instr-upstream", [load.tool("nginx"), "-c", work / "upstream.conf", "-p", work]))
        rd = load.free_port()
        procs.append(load.Proc("instr-redis", [load.tool("redis-server"), "--port", rd, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]))
        load.wait_port(up)
        load.wait_port(rd)
        for tag, binary in [("this", args.binary)] + ([("compare", args.compare)] if args.compare else []):
            load.log(f"{binary}:")
            report[binary] = run_binary(binary, tag, args, work, up, rd)
    finally:
        for p in procs:
            p.stop()
    (OUT / "summary.json").write_text(json.dumps(report, indent=2))
    load.log(f"wrote {OUT / 'summary.json'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
