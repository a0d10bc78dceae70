"""Prefix-aware vs round-robin routing, 1 vs 2 replicas, on a local Ray cluster: the same
requests (4 clients, 4 long system prompts) in each configuration, every replica's prompt cache
emptied (restart) before each. Prints a markdown table (docs/RESULTS.md).

  $(scripts/ray_env.sh --python) deploy/ray/bench_routing.py [--requests 48] [--cache 12MiB]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402
from ray import serve  # noqa: E402

import tqlm_ray  # noqa: E402
from tqlm_ray import config  # noqa: E402
from tqlm_ray.__main__ import start  # noqa: E402
from tqlm_ray.loadgen import plan, run_load, system_prompts  # noqa: E402
from tqlm_ray.routing import HashRing  # noqa: E402


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--cache", default="12MiB", help="--prompt-cache-bytes of each replica")
    ap.add_argument("--threads", type=int, default=1, help="-t of each replica")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/tqlm/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--binary", default="")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--prompt-seed", type=int, default=7,
                    help="seed of the 4 system prompts (7: the ring puts 3 on r0, 1 on r1; 5: 2 and 2)")
    a = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config.load(None, [{
        "tqlm": {"binary": a.binary, "model": a.model, "threads": a.threads, "host": "127.0.0.1",
                 "args": ["--parallel", "2", "-c", "1024", "--prompt-cache-bytes", a.cache]},
        "replicas": {"count": 2, "min": 1, "max": 2},
        "health": {"interval_s": 0.5},
        "http": {"port": port},
    }])
    ray.init(address="local", num_cpus=a.num_cpus, include_dashboard=False,
             object_store_memory=100 << 20, log_to_driver=False,
             runtime_env={"py_modules": [tqlm_ray]})
    systems = system_prompts(4, seed=a.prompt_seed)
    ring = HashRing(["r0", "r1"])
    split = [ring.walk("H\x00" + s)[0] for s in systems]
    reqs = plan(a.requests, 4, seed=21)
    rows = []
    load_before = os.getloadavg()
    try:
        url = start(cfg, address="local")
        for replicas, policy in ((1, "prefix"), (2, "round_robin"), (2, "prefix")):
            post(f"{url}/admin/scale", {"count": replicas})
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"{url}/admin/replicas", timeout=30) as r:
                    snap = json.loads(r.read())
                if snap["aggregate"]["ready"] == replicas and len(snap["replicas"]) == replicas:
                    break
                time.sleep(0.5)
            post(f"{url}/admin/restart", {})
            post(f"{url}/admin/policy", {"policy": policy})
            with urllib.request.urlopen(f"{url}/admin/replicas", timeout=30) as r:
                spilled0 = json.loads(r.read())["aggregate"]["spilled"]
            res = run_load(url, systems, reqs, clients=a.clients, max_tokens=a.max_tokens)
            s = res.summary()
            with urllib.request.urlopen(f"{url}/admin/replicas", timeout=30) as r:
                s["spilled"] = json.loads(r.read())["aggregate"]["spilled"] - spilled0
            s.update(replicas=replicas, policy=policy)
            rows.append(s)
            print(json.dumps(s), file=sys.stderr, flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"{a.requests} requests (4 system prompts of ~{len(systems[0])} characters, {a.clients} "
          f"clients, max_tokens {a.max_tokens}, temperature 0), SmolLM2-135M Q4_1, -t {a.threads}"
          f" --parallel 2 --prompt-cache-bytes {a.cache} per replica; {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), local Ray cluster of {a.num_cpus} CPUs; "
          f"prompt seed {a.prompt_seed}: the hash ring maps the 4 prompts to {split}; load "
          f"average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| replicas | routing | failed | wall s | requests/s | completion tokens/s | prompt tokens "
          "| cached tokens | hit rate | requests per replica | spilled for load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in rows:
        print(f"| {s['replicas']} | {s['policy']} | {s['failed']} | {s['wall_s']:.1f} | "
              f"{s['requests_per_s']:.2f} | {s['completion_tokens'] / s['wall_s']:.1f} | "
              f"{s['prompt_tokens']} | {s['cached_tokens']} | {s['hit_rate']:.1%} | "
              f"{' '.join(f'{k}:{v}' for k, v in s['by_replica'].items())} | {s['spilled']} |")
    return 1 if any(s["failed"] for s in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
