"""Reading a replica's /metrics (Prometheus text) and the autoscaling decision."""
from __future__ import annotations

import time
from collections import deque

# Counters of `tqlm serve` that the router accumulates across replica restarts.
COUNTERS = {
    "tqlm_requests_finished_total": "finished",
    "tqlm_prompt_tokens_total": "prompt_tokens",
    "tqlm_prefill_tokens_total": "prefill_tokens",
    "tqlm_prompt_cache_tokens_reused_total": "cached_tokens",
    "tqlm_prompt_cache_hits_total": "cache_hits",
    "tqlm_prompt_cache_lookups_total": "cache_lookups",
    "tqlm_generated_tokens_total": "generated_tokens",
}
GAUGES = {"tqlm_queue_depth": "queue", "tqlm_slots": "slots", "tqlm_slots_active": "active"}


def parse_prometheus(text: str) -> dict[str, float]:
    """Unlabelled samples only ('name value'); labelled ones are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#" or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


class CounterTotals:
    """Totals of one replica slot over all its processes (a restarted server counts from 0)."""

    def __init__(self) -> None:
        self.totals = {k: 0.0 for k in COUNTERS.values()}
        self.gauges = {k: 0.0 for k in GAUGES.values()}
        self._last: dict[str, float] = {}
        self._samples: deque[tuple[float, float]] = deque()  # (time, generated tokens total)

    def new_process(self) -> None:
        self._last = {}
        self.gauges = {k: 0.0 for k in GAUGES.values()}

    def update(self, sample: dict[str, float], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for name, key in COUNTERS.items():
            if name not in sample:
                continue
            v, last = sample[name], self._last.get(name, 0.0)
            self.totals[key] += v - last if v >= last else v
            self._last[name] = v
        for name, key in GAUGES.items():
            if name in sample:
                self.gauges[key] = sample[name]
        self._samples.append((now, self.totals["generated_tokens"]))
        while len(self._samples) > 2 and now - self._samples[1][0] >= 10.0:
            self._samples.popleft()

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the last ~10 s of polls."""
        if len(self._samples) < 2:
            return 0.0
        (t0, g0), (t1, g1) = self._samples[0], self._samples[-1]
        return (g1 - g0) / (t1 - t0) if t1 > t0 else 0.0


class Autoscaler:
    """Queue-depth autoscaling: one replica more when the mean number of queued requests per
    ready replica (tqlm_queue_depth, plus requests waiting in the router) stays above
    `target_queue` for `up_after_s`; one fewer when nothing is queued and the busy slots would
    fit in one replica fewer at most half full, for `down_after_s`."""

    def __init__(self, target_queue: float, up_after_s: float, down_after_s: float,
                 lo: int, hi: int):
        self.target_queue, self.up_after_s, self.down_after_s = target_queue, up_after_s, down_after_s
        self.lo, self.hi = lo, hi
        self._up_since: float | None = None
        self._down_since: float | None = None

    def decide(self, now: float, ready: int, queued: float, busy_slots: float,
               slots_per_replica: float) -> int:
        """+1, -1 or 0 replicas."""
        if ready == 0:
            self._up_since = self._down_since = None
            return 0
        if queued / ready > self.target_queue and ready < self.hi:
            self._down_since = None
            self._up_since = now if self._up_since is None else self._up_since
            if now - self._up_since >= self.up_after_s:
                self._up_since = None
                return 1
            return 0
        self._up_since = None
        if (queued == 0 and ready > self.lo
                and busy_slots <= 0.5 * (ready - 1) * max(1.0, slots_per_replica)):
            self._down_since = now if self._down_since is None else self._down_since
            if now - self._down_since >= self.down_after_s:
                self._down_since = None
                return -1
            return 0
        self._down_since = None
        return 0
