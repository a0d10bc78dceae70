"""Unit checks of deploy/ray's pure parts: routing, configuration errors, metrics, autoscaling."""
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tqlm_ray import config  # noqa: E402
from tqlm_ray.metrics import Autoscaler, CounterTotals, parse_prometheus  # noqa: E402
from tqlm_ray.routing import Chooser, HashRing, load_bound, routing_key  # noqa: E402


class Routing(unittest.TestCase):
    def test_key_is_system_prompt_and_tools(self):
        a = {"messages": [{"role": "system", "content": "S1"}, {"role": "user", "content": "q1"}]}
        b = {"messages": [{"role": "system", "content": "S1"}, {"role": "user", "content": "q2"}]}
        c = {"messages": [{"role": "system", "content": "S2"}, {"role": "user", "content": "q1"}]}
        k = lambda x: routing_key("/v1/chat/completions", x, 1024)  # noqa: E731
        self.assertEqual(k(a), k(b))
        self.assertNotEqual(k(a), k(c))
        d = dict(a, tools=[{"type": "function", "function": {"name": "f"}}])
        self.assertNotEqual(k(a), k(d))
        # No system prompt: the first K characters of the conversation.
        e = {"messages": [{"role": "user", "content": "x" * 50 + "A"}]}
        f = {"messages": [{"role": "user", "content": "x" * 50 + "B"}]}
        self.assertEqual(routing_key("/v1/chat/completions", e, 20),
                         routing_key("/v1/chat/completions", f, 20))
        self.assertNotEqual(routing_key("/v1/chat/completions", e, 200),
                            routing_key("/v1/chat/completions", f, 200))
        self.assertEqual(routing_key("/v1/completions", {"prompt": "abcdef"}, 3),
                         routing_key("/v1/completions", {"prompt": "abcxyz"}, 3))

    def test_ring_moves_only_the_removed_replicas_keys(self):
        ring = HashRing(["r0", "r1", "r2", "r3"])
        keys = [f"k{i}" for i in range(2000)]
        before = {k: ring.walk(k)[0] for k in keys}
        ring.remove("r2")
        after = {k: ring.walk(k)[0] for k in keys}
        for k in keys:
            if before[k] != "r2":
                self.assertEqual(before[k], after[k])
        share = sum(v == "r2" for v in before.values()) / len(keys)
        self.assertTrue(0.1 < share < 0.4, share)  # virtual nodes spread the keys

    def test_same_key_same_replica_when_idle(self):
        ch = Chooser("prefix")
        ch.sync(["r0", "r1"])
        load = {"r0": 0, "r1": 0}
        picks = {ch.choose("Hsystem-A", load) for _ in range(20)}
        self.assertEqual(len(picks), 1)

    def test_bounded_load(self):
        rng = random.Random(1)
        for n in (2, 3, 5):
            ch = Chooser("prefix", imbalance=1.25, slack=0)
            names = [f"r{i}" for i in range(n)]
            ch.sync(names)
            load = dict.fromkeys(names, 0)
            for _ in range(300):  # one hot key plus random arrivals and departures
                key = "Hhot" if rng.random() < 0.8 else f"H{rng.random()}"
                total = sum(load.values())
                pick = ch.choose(key, load)
                self.assertLess(load[pick], load_bound(total, n, 1.25, 0))
                load[pick] += 1
                if rng.random() < 0.45:
                    busy = [k for k, v in load.items() if v]
                    load[rng.choice(busy)] -= 1
            self.assertLessEqual(max(load.values()),
                                 load_bound(sum(load.values()) - 1, n, 1.25, 0))

    def test_slack(self):
        # 2 replicas, 3 requests in flight on the hot prefix's replica, none on the other:
        # without slack the 4th spills; with slack 2 it waits behind its cached prefix (a
        # replica holds at most ceil(mean) + 2 here).
        self.assertEqual(load_bound(3, 2, 1.25, 0), 3)
        self.assertEqual(load_bound(3, 2, 1.25, 2), 4)
        self.assertEqual(load_bound(99, 4, 1.25, 2), 32)  # heavy load: the relative bound rules
        ch = Chooser("prefix", slack=2)
        ch.sync(["r0", "r1"])
        first = ch.choose("Hhot", {"r0": 0, "r1": 0})
        other = "r1" if first == "r0" else "r0"
        self.assertEqual(ch.choose("Hhot", {first: 3, other: 0}), first)
        self.assertEqual(ch.choose("Hhot", {first: 4, other: 0}), first)
        self.assertEqual(ch.choose("Hhot", {first: 5, other: 0}), other)
        self.assertEqual(ch.last_primary, first)

    def test_round_robin_alternates_and_exclude(self):
        ch = Chooser("round_robin")
        ch.sync(["r0", "r1"])
        picks = [ch.choose("Hsame", {"r0": 0, "r1": 0}) for _ in range(6)]
        self.assertEqual(sorted(set(picks)), ["r0", "r1"])
        self.assertTrue(all(a != b for a, b in zip(picks, picks[1:])))
        self.assertEqual(ch.choose("x", {"r0": 0, "r1": 0}, exclude={"r0"}), "r1")
        self.assertIsNone(ch.choose("x", {"r0": 0}, exclude={"r0"}))

    def test_bad_policy(self):
        with self.assertRaises(ValueError):
            Chooser("random")


class Config(unittest.TestCase):
    def load(self, text, **kw):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        try:
            return config.load(f.name, check_files=False, **kw)
        finally:
            os.unlink(f.name)

    def test_errors_name_the_key(self):
        cases = {
            "routing: {polcy: prefix}": "routing.polcy",
            "routing: {policy: random}": "routing.policy",
            "replicas: {count: 9, max: 4}": "replicas.min <= replicas.count",
            "tqlm: {args: [--port, '9']}": "--port",
            "tqlm: {threads: two}": "tqlm.threads",
            "http: {port: 70000}": "http.port",
            "health: 3": "'health' must be a mapping",
            "[1, 2]": "mapping at the top level",
            "routing: {imbalance: 0.5}": "routing.imbalance",
            "routing: {slack: -1}": "routing.slack",
        }
        for text, needle in cases.items():
            with self.assertRaises(config.ConfigError, msg=text) as cm:
                self.load(text)
            self.assertIn(needle, str(cm.exception), text)

    def test_defaults_and_override(self):
        cfg = self.load("tqlm: {threads: 2}", overrides=[config.parse_override("routing.policy=round_robin")])
        self.assertEqual(cfg["routing"]["policy"], "round_robin")
        self.assertEqual(cfg["replicas"]["num_cpus"], 2.0)

    def test_missing_files(self):
        with self.assertRaises(config.ConfigError) as cm:
            config.load(None, [{"tqlm": {"binary": "/nonexistent/tqlm"}}])
        self.assertIn("not found or not executable", str(cm.exception))
        with self.assertRaises(config.ConfigError) as cm:
            config.load(None, [{"tqlm": {"binary": sys.executable, "model": "/no/such.gguf"}}])
        self.assertIn("model file /no/such.gguf not found", str(cm.exception))
        with self.assertRaises(config.ConfigError):
            config.load("/no/such/config.yaml")


class ServeApp(unittest.TestCase):
    def test_builder_args(self):
        from ray.serve import Application

        from tqlm_ray import serve_app

        app = serve_app.build({"set": [f"tqlm.binary={sys.executable}", "replicas.count=3"]})
        self.assertIsInstance(app, Application)
        with self.assertRaises(config.ConfigError):
            serve_app.build({"replicas": 3})
        with self.assertRaises(config.ConfigError):
            serve_app.build({"set": [f"tqlm.binary={sys.executable}", "routing.policy=x"]})


class Metrics(unittest.TestCase):
    def test_parse_and_restart(self):
        text = ("# HELP x\ntqlm_http_requests_total{endpoint=\"/health\",code=\"200\"} 3\n"
                "tqlm_prompt_tokens_total 100\ntqlm_prompt_cache_tokens_reused_total 40\n"
                "tqlm_generated_tokens_total 10\ntqlm_queue_depth 2\n")
        s = parse_prometheus(text)
        self.assertEqual(s["tqlm_prompt_tokens_total"], 100)
        self.assertNotIn("tqlm_http_requests_total", s)
        c = CounterTotals()
        c.update(s, now=0.0)
        c.update(dict(s, tqlm_prompt_tokens_total=150, tqlm_generated_tokens_total=30), now=2.0)
        self.assertEqual(c.totals["prompt_tokens"], 150)
        self.assertAlmostEqual(c.tokens_per_second(), 10.0)
        c.new_process()  # the server restarted: its counters start again from 0
        c.update({"tqlm_prompt_tokens_total": 20}, now=3.0)
        self.assertEqual(c.totals["prompt_tokens"], 170)
        self.assertEqual(c.gauges["queue"], 0)

    def test_autoscaler(self):
        a = Autoscaler(target_queue=2, up_after_s=5, down_after_s=10, lo=1, hi=3)
        self.assertEqual(a.decide(0, ready=1, queued=5, busy_slots=2, slots_per_replica=2), 0)
        self.assertEqual(a.decide(4, ready=1, queued=5, busy_slots=2, slots_per_replica=2), 0)
        self.assertEqual(a.decide(5, ready=1, queued=5, busy_slots=2, slots_per_replica=2), 1)
        # A dip below the target restarts the clock.
        self.assertEqual(a.decide(6, ready=2, queued=5, busy_slots=4, slots_per_replica=2), 0)
        self.assertEqual(a.decide(7, ready=2, queued=1, busy_slots=4, slots_per_replica=2), 0)
        self.assertEqual(a.decide(12, ready=2, queued=5, busy_slots=4, slots_per_replica=2), 0)
        self.assertEqual(a.decide(17, ready=2, queued=5, busy_slots=4, slots_per_replica=2), 1)
        self.assertEqual(a.decide(30, ready=3, queued=30, busy_slots=6, slots_per_replica=2), 0)  # at max
        self.assertEqual(a.decide(40, ready=3, queued=30, busy_slots=6, slots_per_replica=2), 0)
        # Idle: down after down_after_s, never below min.
        self.assertEqual(a.decide(50, ready=3, queued=0, busy_slots=0, slots_per_replica=2), 0)
        self.assertEqual(a.decide(60, ready=3, queued=0, busy_slots=0, slots_per_replica=2), -1)
        self.assertEqual(a.decide(61, ready=1, queued=0, busy_slots=0, slots_per_replica=2), 0)
        self.assertEqual(a.decide(90, ready=1, queued=0, busy_slots=0, slots_per_replica=2), 0)
        # Busy without a queue: no scale-down while the slots would not fit in one fewer.
        self.assertEqual(a.decide(100, ready=2, queued=0, busy_slots=2, slots_per_replica=2), 0)
        self.assertEqual(a.decide(200, ready=2, queued=0, busy_slots=2, slots_per_replica=2), 0)


if __name__ == "__main__":
    unittest.main()
