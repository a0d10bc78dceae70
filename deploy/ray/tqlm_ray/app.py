"""The Ray Serve application: one OpenAI-compatible endpoint in front of N `tqlm serve` replicas.

`Router` is a Serve deployment (the HTTP ingress, one Serve replica). It owns the pool of
`TqlmReplica` Ray actors (replica.py): starts them, health-checks them (/health and /metrics of
each server, every `health.interval_s`), restarts a dead one, scales the pool by queue depth, and
proxies each request to the replica that `routing.Chooser` picks, streaming responses through
byte for byte.

Failure semantics: a request that never reached a replica (connection refused: the server is
gone) is sent to another replica; a request in flight on a replica that dies gets an error (HTTP
502 in OpenAI's error format, or an SSE `error` event when the stream had begun), never a hang.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
from typing import Any

import httpx
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import config
from .metrics import GAUGES, Autoscaler, CounterTotals, parse_prometheus
from .replica import TqlmReplica
from .routing import POLICIES, Chooser, routing_key

PROXIED = ("/v1/chat/completions", "/v1/completions")


def _error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


class Slot:
    """One replica position (r0, r1, ...): survives restarts of its actor and server."""

    def __init__(self, name: str):
        self.name = name
        self.state = "starting"  # starting | ready | dead | draining | stopped
        self.actor = None
        self.info: dict[str, Any] = {}
        self.generation = 0
        self.restarts = 0
        self.start_failures = 0
        self.retry_at = 0.0
        self.inflight = 0
        self.fails = 0
        self.requests = 0  # routed here
        self.failed = 0  # errors returned for requests in flight here
        self.failovers = 0  # requests that could not connect and went elsewhere
        self.spilled = 0  # requests whose prefix maps here, sent elsewhere for load
        self.last_error = ""
        self.stats = CounterTotals()
        self.starting_thread: threading.Thread | None = None

    def view(self) -> dict:
        return {
            "name": self.name, "state": self.state, "generation": self.generation,
            "url": self.info.get("url"), "pid": self.info.get("pid"), "node": self.info.get("node"),
            "log": self.info.get("log"), "restarts": self.restarts, "inflight": self.inflight,
            "requests": self.requests, "failed": self.failed, "failovers": self.failovers,
            "spilled": self.spilled,
            **{k: self.stats.totals[k] for k in self.stats.totals},
            **{k: self.stats.gauges[k] for k in self.stats.gauges},
            "tokens_per_s": round(self.stats.tokens_per_second(), 2),
            "last_error": self.last_error,
        }


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, health_check_period_s=10)
class Router:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.lock = threading.RLock()
        ro = cfg["routing"]
        self.chooser = Chooser(ro["policy"], ro["imbalance"], ro["virtual_nodes"], ro["slack"])
        self.slots: dict[str, Slot] = {}
        a, r = cfg["autoscale"], cfg["replicas"]
        self.autoscaler = Autoscaler(a["target_queue"], a["up_after_s"], a["down_after_s"],
                                     r["min"], r["max"])
        self.waiting = 0  # requests waiting in the router for a ready replica
        self.rejected = 0
        self.scale_events: list[dict] = []
        self.stopping = threading.Event()
        self.http = httpx.Client(timeout=cfg["health"]["timeout_s"],
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self._client: httpx.AsyncClient | None = None
        with self.lock:
            for _ in range(r["count"]):
                self._add_slot()
        self.control = threading.Thread(target=self._control_loop, name="tqlm-control", daemon=True)
        self.control.start()

    # ---- pool -------------------------------------------------------------------------------
    def _add_slot(self) -> Slot:
        i = 0
        while f"r{i}" in self.slots:
            i += 1
        slot = Slot(f"r{i}")
        self.slots[slot.name] = slot
        self._start(slot)
        return slot

    def _sync_ring(self) -> None:
        self.chooser.sync([s.name for s in self.slots.values() if s.state == "ready"])

    def _start(self, slot: Slot) -> None:
        slot.state = "starting"
        slot.starting_thread = threading.Thread(target=self._start_blocking, args=(slot,), daemon=True)
        slot.starting_thread.start()

    def _start_blocking(self, slot: Slot) -> None:
        t, r, h = self.cfg["tqlm"], self.cfg["replicas"], self.cfg["health"]
        actor = TqlmReplica.options(num_cpus=r["num_cpus"]).remote(
            slot.name, t["binary"], t["model"], t["threads"], t["args"], t["host"])
        try:
            # Includes the wait for Ray to find the CPUs for the actor.
            info = ray.get(actor.start.remote(h["start_timeout_s"]), timeout=h["start_timeout_s"] + 30)
        except Exception as e:  # noqa: BLE001 (any failure to start is reported and retried)
            ray.kill(actor)
            with self.lock:
                slot.start_failures += 1
                cause = getattr(e, "cause", None) or e  # the actor's own exception
                slot.last_error = f"start failed: {cause}".strip()[-2000:]
                slot.retry_at = time.monotonic() + min(30.0, 2.0 ** slot.start_failures)
                if slot.state == "starting":
                    slot.state = "dead"
            print(f"[tqlm-ray] {slot.name}: {slot.last_error}", flush=True)
            return
        with self.lock:
            if slot.state != "starting":  # removed while starting
                ray.kill(actor)
                return
            slot.actor, slot.info = actor, info
            slot.generation += 1
            slot.fails = 0
            slot.start_failures = 0
            slot.stats.new_process()
            slot.state = "ready"
            self._sync_ring()
        print(f"[tqlm-ray] {slot.name} ready: {info['url']} pid {info['pid']} on {info['node']}",
              flush=True)

    def _mark_dead(self, slot: Slot, why: str, restart: bool = False) -> bool:
        """Takes a replica out (its actor and server killed); with `restart`, starts a new one in
        the same slot at once (else the control loop does). False if it was not up."""
        with self.lock:
            if slot.state not in ("ready", "draining"):
                return False
            was_draining = slot.state == "draining"
            slot.state = "stopped" if was_draining else "dead"
            slot.last_error = why
            slot.retry_at = 0.0
            self._sync_ring()
            actor, slot.actor = slot.actor, None
            if restart and not was_draining:
                slot.restarts += 1
                self._start(slot)
        print(f"[tqlm-ray] {slot.name} down: {why}", flush=True)
        if actor is not None:
            ray.kill(actor)  # its server dies with it: requests still on it get their error now
        return True

    def _stop_slot(self, slot: Slot) -> None:
        with self.lock:
            slot.state = "stopped"
            self._sync_ring()
            actor, slot.actor = slot.actor, None
            self.slots.pop(slot.name, None)
        if actor is not None:
            try:
                ray.get(actor.stop.remote(), timeout=15)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(actor)

    def _poll(self, slot: Slot) -> None:
        url = slot.info.get("url")
        try:
            r = self.http.get(f"{url}/health")
            if r.status_code != 200:
                raise httpx.HTTPError(f"/health answered {r.status_code}")
            m = self.http.get(f"{url}/metrics")
            sample = parse_prometheus(m.text)
            with self.lock:
                slot.fails = 0
                slot.stats.update(sample)
        except httpx.ConnectError as e:
            self._mark_dead(slot, f"health check: connection refused ({e})")
        except Exception as e:  # noqa: BLE001 (timeouts, bad answers)
            with self.lock:
                slot.fails += 1
                n = slot.fails
            if n >= self.cfg["health"]["failures"]:
                self._mark_dead(slot, f"health check failed {n} times: {e}")

    def poll_all(self) -> None:
        with self.lock:
            live = [s for s in self.slots.values() if s.state in ("ready", "draining")]
        for s in live:
            self._poll(s)

    def _control_loop(self) -> None:
        interval = self.cfg["health"]["interval_s"]
        while not self.stopping.wait(interval):
            try:
                self._control_step()
            except Exception:  # noqa: BLE001 (the loop must survive anything)
                traceback.print_exc()

    def _control_step(self) -> None:
        self.poll_all()
        now = time.monotonic()
        with self.lock:
            for s in list(self.slots.values()):
                if s.state == "dead" and now >= s.retry_at:
                    s.restarts += 1
                    self._start(s)
                elif s.state == "draining" and s.inflight == 0:
                    threading.Thread(target=self._stop_slot, args=(s,), daemon=True).start()
                    s.state = "stopped"
                    self._sync_ring()
            if not self.cfg["autoscale"]["enabled"]:
                return
            ready = [s for s in self.slots.values() if s.state == "ready"]
            pending = [s for s in self.slots.values() if s.state in ("starting", "dead")]
            queued = sum(s.stats.gauges["queue"] for s in ready) + self.waiting
            busy = sum(s.stats.gauges["active"] for s in ready)
            per = max((s.stats.gauges["slots"] for s in ready), default=1.0)
            if pending:  # let the pool settle before deciding again
                return
            d = self.autoscaler.decide(now, len(ready), queued, busy, per)
            if d > 0:
                slot = self._add_slot()
                self.scale_events.append({"t": time.time(), "event": "up", "replica": slot.name,
                                          "queued": queued, "ready": len(ready)})
            elif d < 0:
                victim = sorted(ready, key=lambda s: (s.inflight, -int(s.name[1:])))[0]
                victim.state = "draining"
                self._sync_ring()
                self.scale_events.append({"t": time.time(), "event": "down",
                                          "replica": victim.name, "ready": len(ready)})
            print(f"[tqlm-ray] autoscale {d:+d}: {queued:.0f} queued on {len(ready)} ready",
                  flush=True) if d else None

    def check_health(self) -> None:  # called by Serve
        if not self.control.is_alive():
            raise RuntimeError("the replica control loop has stopped")

    def __del__(self) -> None:
        self.stopping.set()
        for s in list(self.slots.values()):
            if s.actor is not None:
                try:
                    ray.kill(s.actor)
                except Exception:  # noqa: BLE001
                    pass

    # ---- views ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self.lock:
            reps = [s.view() for s in sorted(self.slots.values(), key=lambda s: int(s.name[1:]))]
            agg = {k: sum(r[k] for r in reps) for k in
                   ("requests", "failed", "failovers", "spilled", "inflight", "restarts", "tokens_per_s",
                    *CounterTotals().totals.keys(), *GAUGES.values())}
            agg["tokens_per_s"] = round(agg["tokens_per_s"], 2)
            agg["ready"] = sum(r["state"] == "ready" for r in reps)
            agg["cache_hit_token_rate"] = (agg["cached_tokens"] / agg["prompt_tokens"]
                                           if agg["prompt_tokens"] else 0.0)
            return {"policy": self.chooser.policy, "replicas": reps, "aggregate": agg,
                    "waiting": self.waiting, "rejected": self.rejected,
                    "scale_events": self.scale_events[-50:], "config": self.cfg}

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines: list[str] = []
        per = [("requests", "counter", "Requests routed to the replica."),
               ("failed", "counter", "Requests in flight on the replica when it failed."),
               ("failovers", "counter", "Requests that could not reach the replica and went to another."),
               ("spilled", "counter", "Requests whose prefix maps to the replica, sent elsewhere for load."),
               ("inflight", "gauge", "Requests the router has in flight on the replica."),
               ("restarts", "counter", "Times the replica was restarted."),
               ("finished", "counter", "Generations finished (tqlm_requests_finished_total)."),
               ("prompt_tokens", "counter", "Prompt tokens (tqlm_prompt_tokens_total)."),
               ("cached_tokens", "counter", "Prompt tokens served from the prompt cache."),
               ("prefill_tokens", "counter", "Prompt tokens computed."),
               ("generated_tokens", "counter", "Tokens generated."),
               ("queue", "gauge", "Requests queued in the replica (tqlm_queue_depth)."),
               ("active", "gauge", "Busy slots of the replica."),
               ("tokens_per_s", "gauge", "Generated tokens per second over the last ~10 s.")]
        for key, kind, help_ in per:
            name = f"tqlm_ray_replica_{key}" + ("_total" if kind == "counter" and not key.endswith("_total") else "")
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            for r in snap["replicas"]:
                lines.append(f'{name}{{replica="{r["name"]}"}} {r[key]}')
            agg = f"tqlm_ray_{key}" + ("_total" if kind == "counter" else "")
            lines += [f"# HELP {agg} {help_} All replicas.", f"# TYPE {agg} {kind}",
                      f"{agg} {snap['aggregate'][key]}"]
        lines += ["# HELP tqlm_ray_replicas Replicas by state.", "# TYPE tqlm_ray_replicas gauge"]
        for st in ("ready", "starting", "dead", "draining"):
            n = sum(r["state"] == st for r in snap["replicas"])
            lines.append(f'tqlm_ray_replicas{{state="{st}"}} {n}')
        lines += ["# HELP tqlm_ray_prompt_cache_hit_token_rate Cached / prompt tokens, all replicas.",
                  "# TYPE tqlm_ray_prompt_cache_hit_token_rate gauge",
                  f"tqlm_ray_prompt_cache_hit_token_rate {snap['aggregate']['cache_hit_token_rate']}",
                  "# HELP tqlm_ray_waiting Requests waiting in the router for a ready replica.",
                  "# TYPE tqlm_ray_waiting gauge", f"tqlm_ray_waiting {snap['waiting']}"]
        return "\n".join(lines) + "\n"

    # ---- HTTP -------------------------------------------------------------------------------
    def _client_for_loop(self) -> httpx.AsyncClient:
        if self._client is None:
            p = self.cfg["proxy"]
            # One connection per request, never a pooled keep-alive one: then a refused
            # connection proves that the request never reached the replica (safe to send
            # elsewhere), while a request written on a kept-alive socket of a server that has
            # just died would fail as if it had been in flight there.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(p["request_timeout_s"], connect=5.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))
        return self._client

    async def __call__(self, request: Request) -> Response:
        path, method = request.url.path.rstrip("/") or "/", request.method
        if path in PROXIED and method == "POST":
            return await self._proxy(request, path)
        if path == "/health":
            ready = sum(s.state == "ready" for s in self.slots.values())
            return JSONResponse({"status": "ok" if ready else "no replica ready", "ready": ready},
                                200 if ready else 503)
        if path == "/metrics":
            return PlainTextResponse(self.prometheus(), media_type="text/plain; version=0.0.4")
        if path == "/v1/models" and method == "GET":
            return await self._forward_get(request, path)
        if path.startswith("/admin/"):
            return await self._admin(request, path, method)
        return _error(404, f"no route {method} {path}", "invalid_request_error")

    async def _admin(self, request: Request, path: str, method: str) -> Response:
        key = self.cfg["http"].get("admin_key") or ""
        if key and request.headers.get("authorization", "") != f"Bearer {key}":
            return _error(401, "admin endpoints need the admin key", "authentication_error")
        body: dict = {}
        if method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return _error(400, "body must be JSON", "invalid_request_error")
        loop = asyncio.get_running_loop()
        if path == "/admin/replicas":
            if request.query_params.get("refresh"):
                await loop.run_in_executor(None, self.poll_all)
            return JSONResponse(self.snapshot())
        if path == "/admin/policy" and method == "POST":
            policy = body.get("policy")
            if policy not in POLICIES:
                return _error(400, f"policy {policy!r}: one of {', '.join(POLICIES)}",
                              "invalid_request_error")
            with self.lock:
                ro = self.cfg["routing"]
                self.chooser = Chooser(policy, ro["imbalance"], ro["virtual_nodes"], ro["slack"])
                ro["policy"] = policy
                self._sync_ring()
            return JSONResponse({"policy": policy})
        if path == "/admin/restart" and method == "POST":
            # Restarts replicas (all, or body["replicas"]) one at a time and waits for each:
            # empties their prompt caches, e.g. between benchmark phases.
            names = body.get("replicas") or sorted(self.slots)
            if not isinstance(names, list):
                return _error(400, "replicas must be a list of names", "invalid_request_error")
            for n in names:
                slot = self.slots.get(n)
                if slot is None:
                    return _error(404, f"no replica {n}", "invalid_request_error")
                await loop.run_in_executor(None, self._restart_blocking, slot)
            return JSONResponse(self.snapshot())
        if path == "/admin/autoscale" and method == "POST":
            # Changes autoscale.* at run time, e.g. {"enabled": true, "target_queue": 1}.
            a = dict(self.cfg["autoscale"])
            try:
                config._merge(a, body, "autoscale")
                checked = config.validate(dict(self.cfg, autoscale=a), check_files=False)
            except config.ConfigError as e:
                return _error(400, str(e), "invalid_request_error")
            with self.lock:
                self.cfg["autoscale"] = checked["autoscale"]
                r = self.cfg["replicas"]
                self.autoscaler = Autoscaler(a["target_queue"], a["up_after_s"], a["down_after_s"],
                                             r["min"], r["max"])
            return JSONResponse(self.cfg["autoscale"])
        if path == "/admin/scale" and method == "POST":
            count = body.get("count")
            r = self.cfg["replicas"]
            if not isinstance(count, int) or not r["min"] <= count <= r["max"]:
                return _error(400, f"count must be an integer in [{r['min']}, {r['max']}]",
                              "invalid_request_error")
            with self.lock:
                live = sorted((s for s in self.slots.values() if s.state != "stopped"),
                              key=lambda s: int(s.name[1:]))
                for s in live[:count]:
                    if s.state == "draining":  # still up: takes requests again
                        s.state = "ready"
                while len(live) < count:
                    live.append(self._add_slot())
                for s in live[count:]:
                    s.state = "draining" if s.state == "ready" else s.state
                    if s.state != "draining":
                        s.state = "stopped"
                        self.slots.pop(s.name, None)
                self._sync_ring()
            return JSONResponse(self.snapshot())
        return _error(404, f"no admin route {method} {path}", "invalid_request_error")

    def _restart_blocking(self, slot: Slot) -> None:
        self._mark_dead(slot, "restart requested", restart=True)
        with self.lock:
            t = slot.starting_thread
        if t is not None:
            t.join()

    async def _pick(self, key: str, exclude: set[str]) -> Slot | None:
        deadline = time.monotonic() + self.cfg["proxy"]["wait_ready_s"]
        waited = False
        try:
            while True:
                with self.lock:
                    load = {n: s.inflight for n, s in self.slots.items() if s.state == "ready"}
                    name = self.chooser.choose(key, load, exclude)
                    if name is not None:
                        slot = self.slots[name]
                        primary = self.chooser.last_primary
                        if primary is not None and primary != name and not exclude:
                            self.slots[primary].spilled += 1
                        slot.inflight += 1
                        slot.requests += 1
                        return slot
                    if not waited:
                        self.waiting += 1
                        waited = True
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(0.05)
        finally:
            if waited:
                with self.lock:
                    self.waiting -= 1

    def _release(self, slot: Slot, failed: bool = False) -> None:
        with self.lock:
            slot.inflight -= 1
            slot.failed += int(failed)

    async def _forward_get(self, request: Request, path: str) -> Response:
        ready = [s for s in self.slots.values() if s.state == "ready"]
        if not ready:
            return _error(503, "no replica ready")
        try:
            r = await self._client_for_loop().get(ready[0].info["url"] + path,
                                                  headers=self._headers(request))
        except httpx.HTTPError as e:
            return _error(502, f"replica {ready[0].name}: {e!r}")
        return Response(r.content, r.status_code, media_type=r.headers.get("content-type"))

    @staticmethod
    def _headers(request: Request) -> dict:
        return {k: v for k, v in request.headers.items()
                if k.lower() in ("authorization", "content-type", "accept", "openai-organization")}

    async def _proxy(self, request: Request, path: str) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return _error(400, f"request body is not a JSON object: {e}", "invalid_request_error")
        key = routing_key(path, body, self.cfg["routing"]["prefix_chars"])
        stream = bool(body.get("stream"))
        headers = self._headers(request)
        client = self._client_for_loop()
        tried: set[str] = set()
        while True:
            slot = await self._pick(key, tried)
            if slot is None:
                self.rejected += 1
                why = (f"replicas {sorted(tried)} could not be reached" if tried else
                       f"no replica ready within {self.cfg['proxy']['wait_ready_s']:.0f} s")
                return _error(503, why)
            tried.add(slot.name)
            try:
                upstream = await client.send(
                    client.build_request("POST", slot.info["url"] + path, content=raw,
                                         headers=headers), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                # Never reached the server: nothing was done, the request goes elsewhere.
                with self.lock:
                    slot.failovers += 1
                self._release(slot)
                if isinstance(e, httpx.ConnectError):
                    asyncio.get_running_loop().run_in_executor(
                        None, self._mark_dead, slot, f"connection refused: {e}")
                continue
            except httpx.HTTPError as e:
                self._release(slot, failed=True)
                return _error(502, f"replica {slot.name} failed while handling the request: {e!r}")
            break
        # The upstream content type as it was (a media_type argument would get a charset added).
        out_headers = {"x-tqlm-replica": slot.name,
                       "content-type": upstream.headers.get("content-type", "application/json")}
        if not (stream and upstream.status_code == 200):
            try:
                content = await upstream.aread()
            except httpx.HTTPError as e:
                self._release(slot, failed=True)
                return _error(502, f"replica {slot.name} failed while handling the request: {e!r}")
            finally:
                await upstream.aclose()
            self._release(slot)
            return Response(content, upstream.status_code, headers=out_headers)

        async def relay():
            failed = False
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError as e:
                failed = True
                err = {"error": {"message": f"replica {slot.name} failed while streaming this "
                                            f"response: {e!r}", "type": "server_error", "code": 502}}
                yield f"event: error\ndata: {json.dumps(err)}\n\n".encode()
            finally:
                await upstream.aclose()
                self._release(slot, failed=failed)

        return StreamingResponse(relay(), upstream.status_code, headers=out_headers)


def build_app(cfg: dict):
    """The application (the package reaches the workers through the job's runtime_env, see
    __main__.start)."""
    return Router.options(max_ongoing_requests=cfg["proxy"]["max_ongoing"]).bind(cfg)
