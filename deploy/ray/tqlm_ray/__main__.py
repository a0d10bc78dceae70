"""Command line: python -m tqlm_ray {serve,check,status} ... (see docs/DEPLOY.md)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

from . import config as config_mod


def _get(url: str, timeout: float = 10.0, key: str = "") -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(url: str, cfg: dict, timeout_s: float | None = None) -> dict:
    """Waits until replicas.count replicas are ready; raises with the replica's own error when
    one cannot start (bad flag, missing model, no CPUs for the actor)."""
    timeout_s = timeout_s or cfg["health"]["start_timeout_s"] + 60
    deadline = time.monotonic() + timeout_s
    key = cfg["http"]["admin_key"]
    snap: dict = {}
    while time.monotonic() < deadline:
        try:
            snap = _get(f"{url}/admin/replicas", key=key)
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.5)
            continue
        ready = snap["aggregate"]["ready"]
        if ready >= cfg["replicas"]["count"]:
            return snap
        for r in snap["replicas"]:
            if r["last_error"].startswith("start failed"):
                raise RuntimeError(f"replica {r['name']} could not start: {r['last_error']}")
        time.sleep(0.5)
    raise TimeoutError(f"{url}: replicas not ready after {timeout_s:.0f} s: "
                       f"{json.dumps(snap.get('replicas', []))[:2000]}")


def start(cfg: dict, address: str = "local", num_cpus: int | None = None, app_name: str = "tqlm",
          wait: bool = True) -> str:
    """Connects to (or starts) a Ray cluster, deploys the app, returns its base URL."""
    import ray
    from ray import serve

    import tqlm_ray

    from .app import build_app

    if not ray.is_initialized():
        kw: dict = {"runtime_env": {"py_modules": [tqlm_ray]}, "include_dashboard": False,
                    "log_to_driver": True}
        if address == "local":
            kw["num_cpus"] = num_cpus
        ray.init(address=address, **kw)
    h = cfg["http"]
    serve.start(http_options={"host": h["host"], "port": h["port"]})
    serve.run(build_app(cfg), name=app_name, route_prefix="/")
    host = "127.0.0.1" if h["host"] in ("0.0.0.0", "::") else h["host"]
    url = f"http://{host}:{h['port']}"
    if wait:
        wait_ready(url, cfg)
    return url


def _config_from_args(a: argparse.Namespace) -> dict:
    over: list[dict] = []
    simple = {"replicas": ("replicas", "count"), "policy": ("routing", "policy"),
              "port": ("http", "port"), "host": ("http", "host"), "model": ("tqlm", "model"),
              "binary": ("tqlm", "binary"), "threads": ("tqlm", "threads")}
    for attr, (sec, key) in simple.items():
        v = getattr(a, attr, None)
        if v is not None:
            over.append({sec: {key: v}})
    for s in getattr(a, "set", None) or []:
        over.append(config_mod.parse_override(s))
    n = getattr(a, "replicas", None)
    if n is not None:  # --replicas N widens replicas.min/max to hold N
        rest = [o for o in over if o != {"replicas": {"count": n}}]
        base = config_mod.load(a.config, rest + [{"replicas": {"count": 1, "min": 1}}],
                               check_files=False)["replicas"] if n >= 1 else {"min": 0, "max": 1}
        over.append({"replicas": {"min": min(base["min"], n), "max": max(base["max"], n)}})
    return config_mod.load(a.config, over)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tqlm_ray", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("serve", "check"):
        s = sub.add_parser(name, help="deploy and serve (blocks)" if name == "serve"
                           else "check a configuration and print it resolved")
        s.add_argument("-c", "--config", help="YAML file (deploy/ray/config.example.yaml)")
        s.add_argument("--replicas", type=int, help="replicas.count")
        s.add_argument("--policy", help="routing.policy: prefix, round_robin, least_loaded")
        s.add_argument("--port", type=int, help="http.port of the endpoint")
        s.add_argument("--host", help="http.host of the endpoint")
        s.add_argument("-m", "--model", help="tqlm.model")
        s.add_argument("--binary", help="tqlm.binary")
        s.add_argument("-t", "--threads", type=int, help="tqlm.threads per replica")
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any key, e.g. --set autoscale.enabled=true")
        if name == "serve":
            s.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "local"),
                           help="Ray cluster: 'local' (start one here; default), 'auto' (the "
                                "cluster `ray start` made on this machine), or HOST:PORT")
            s.add_argument("--num-cpus", type=int, help="CPUs of a local cluster (default: all)")
    st = sub.add_parser("status", help="the replicas of a running deployment")
    st.add_argument("--url", default="http://127.0.0.1:8000")
    st.add_argument("--admin-key", default="")
    a = p.parse_args(argv)

    if a.cmd == "status":
        snap = _get(f"{a.url}/admin/replicas?refresh=1", key=a.admin_key)
        print(f"policy {snap['policy']}, {snap['aggregate']['ready']} ready")
        cols = ("name", "state", "url", "restarts", "inflight", "requests", "failed", "queue",
                "prompt_tokens", "cached_tokens", "tokens_per_s")
        print("  ".join(f"{c:>13}" for c in cols))
        for r in snap["replicas"] + [dict(snap["aggregate"], name="all", state="", url="")]:
            print("  ".join(f"{str(r.get(c, '')):>13}" for c in cols))
        return 0
    try:
        cfg = _config_from_args(a)
    except config_mod.ConfigError as e:
        print(f"tqlm_ray: {e}", file=sys.stderr)
        return 2
    if a.cmd == "check":
        print(json.dumps(cfg, indent=2))
        return 0
    try:
        url = start(cfg, address=a.address, num_cpus=a.num_cpus)
    except (RuntimeError, TimeoutError) as e:
        print(f"tqlm_ray: {e}", file=sys.stderr)
        return 1
    print(f"tqlm_ray: {cfg['replicas']['count']} replicas of {cfg['tqlm']['model']} behind "
          f"{url}/v1 (routing: {cfg['routing']['policy']}); metrics {url}/metrics, replicas "
          f"{url}/admin/replicas; Ctrl-C stops", flush=True)
    import signal
    import threading

    import ray
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("tqlm_ray: stopping", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
