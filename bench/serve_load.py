"""Bounded load test of `tqlm serve` on loopback with the official openai client.

Starts the server (any free port), warms it up, then sends a fixed number of streamed chat
requests from a few concurrent clients, --rounds times. Prints failures, latency p50/p99, time
to first token, aggregate generated tokens/s, the server's resident memory after warm-up and
after each round (read once the server is idle, SETTLE seconds after the round's last answer),
the C heap in use and free inside malloc (from /metrics: a leak grows the first, fragmentation
the second), figures from /metrics, and a memory verdict:
  stable  when, from round 2 on (the prompt cache has filled in round 1), RSS rises by less
          than SLOPE MiB per round (least-squares slope) and never ends a round more than
          SPREAD MiB above round 2. Needs --rounds >= 4; fewer rounds print no verdict.
Stops by itself.

  $(scripts/server_env.sh --python) bench/serve_load.py [--requests 64] [--clients 4]
      [--parallel 4] [--max-tokens 64] [-- extra tqlm serve flags, e.g. --ctk tq4 --ctv tq3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "a robot", "the moon",
          "a forest", "a train journey"]
SYSTEM = "You are a helpful assistant. Answer in a few sentences."


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def start_server(args, extra):
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    cmd = [args.tqlm, "serve", "--port", "0", "--parallel", str(args.parallel),
           "-c", str(args.ctx), "--max-queue", str(args.requests)] + extra
    if args.model:
        cmd += ["-m", args.model]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        text = open(log.name).read()
        m = re.search(r"on http://[^:]+:(\d+) ", text)
        if m:
            return proc, int(m.group(1)), log.name, " ".join(cmd)
        if proc.poll() is not None:
            sys.exit("server exited:\n" + text)
        time.sleep(0.1)
    proc.kill()
    sys.exit("server did not start")


def one_request(client, model, i, max_tokens):
    """(latency s, time to first token s, completion tokens) of one streamed chat."""
    t0 = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model, max_tokens=max_tokens, temperature=0.7, seed=i, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": f"Write about {TOPICS[i % len(TOPICS)]}."}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - t0
        if chunk.usage:
            usage = chunk.usage
    if usage is None:
        raise RuntimeError("no usage chunk")
    return time.perf_counter() - t0, first if first is not None else 0.0, usage.completion_tokens


def run_round(client, model, args):
    results, failures = [], []
    lock = threading.Lock()
    next_id = [0]

    def worker():
        while True:
            with lock:
                i = next_id[0]
                if i >= args.requests:
                    return
                next_id[0] += 1
            try:
                r = one_request(client, model, i, args.max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - every failure is counted and printed
                with lock:
                    failures.append(f"request {i}: {e!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, failures, time.perf_counter() - t0


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(tqlm_\w+) (\S+)$", text, re.M)}


def memory_verdict(rss, args):
    """The stable/growing verdict on RSS after each round (MiB), with the rule it used."""
    rule = (f"rule: from round 2 on, least-squares slope < {args.slope} MiB/round and every round "
            f"within {args.spread} MiB of round 2")
    tail = rss[1:]
    if len(tail) < 3:
        return f"memory verdict: none (needs --rounds >= 4; {rule})"
    xs = range(len(tail))
    mx, my = statistics.mean(xs), statistics.mean(tail)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, tail)) / sum((x - mx) ** 2 for x in xs)
    above = max(tail) - tail[0]
    ok = slope < args.slope and above <= args.spread
    return (f"memory verdict: {'stable' if ok else 'GROWING'} (slope {slope:+.3f} MiB/round, "
            f"highest {above:+.1f} MiB vs round 2; {rule})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tqlm", default=os.path.join(ROOT, "build", "tqlm"))
    ap.add_argument("--model", default="")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settle", type=float, default=1.0, help="idle seconds before reading RSS")
    ap.add_argument("--slope", type=float, default=0.1, help="stable: MiB per round at most")
    ap.add_argument("--spread", type=float, default=1.0, help="stable: MiB above round 2 at most")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    proc, port, log, cmd = start_server(args, extra)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                               max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        print(f"server: {cmd}")
        print(f"load: {args.requests} streamed chat requests x {args.rounds} rounds, "
              f"{args.clients} concurrent clients, max_tokens {args.max_tokens}")
        # Warm-up: every slot once, so allocations that persist by design (scratch buffers,
        # the prompt cache's first entries) exist before the baseline is taken.
        warm = argparse.Namespace(**{**vars(args), "requests": args.parallel, "clients": args.parallel})
        run_round(client, model, warm)
        time.sleep(args.settle)
        baseline = rss_kib(proc.pid)
        print(f"RSS after warm-up: {baseline / 1024:.1f} MiB")
        total_fail = 0
        rss_rounds, heap_rounds = [], []
        for rnd in range(1, args.rounds + 1):
            results, failures, wall = run_round(client, model, args)
            total_fail += len(failures)
            for f in failures[:10]:
                print("  FAILED", f)
            lat = [r[0] for r in results]
            ttft = [r[1] for r in results]
            toks = sum(r[2] for r in results)
            time.sleep(args.settle)
            rss = rss_kib(proc.pid)
            rss_rounds.append(rss / 1024)
            m = metrics(port)
            if "tqlm_heap_bytes_in_use" in m:
                heap_rounds.append(m["tqlm_heap_bytes_in_use"] / 1048576)
            pc = m["tqlm_prompt_cache_bytes"] / 1048576
            heap = (f"; heap in use {m['tqlm_heap_bytes_in_use'] / 1048576:.2f} MiB, free in malloc "
                    f"{m['tqlm_heap_bytes_free'] / 1048576:.1f} MiB" if "tqlm_heap_bytes_in_use" in m else "")
            print(f"round {rnd}: {len(results)} ok, {len(failures)} failed in {wall:.1f} s | "
                  f"latency p50 {percentile(lat, 50):.2f} s p99 {percentile(lat, 99):.2f} s | "
                  f"first token p50 {percentile(ttft, 50):.2f} s p99 {percentile(ttft, 99):.2f} s | "
                  f"{toks} tokens, {toks / wall:.1f} tokens/s aggregate | "
                  f"RSS {rss / 1024:.1f} MiB ({(rss - baseline) / 1024:+.1f} MiB vs warm-up; "
                  f"prompt cache holds {pc:.1f} MiB{heap})"
                  if results else f"round {rnd}: all {len(failures)} failed")
        m = metrics(port)
        print(f"server metrics: decode {m['tqlm_decode_tokens_per_second']:.1f} tokens/s over "
              f"{m['tqlm_decode_steps_total']:.0f} steps, mean batch {m['tqlm_decode_batch_mean']:.2f}, "
              f"prompt cache {m['tqlm_prompt_cache_hits_total']:.0f}/{m['tqlm_prompt_cache_lookups_total']:.0f} hits "
              f"({m['tqlm_prompt_cache_tokens_reused_total']:.0f} tokens reused, "
              f"{m['tqlm_prompt_cache_bytes'] / 1048576:.1f} MiB), heap trims {m.get('tqlm_heap_trims_total', 0):.0f}, "
              f"slots active {m['tqlm_slots_active']:.0f}, "
              f"queue {m['tqlm_queue_depth']:.0f}")
        print(f"RSS per round (MiB): {' '.join(f'{r:.1f}' for r in rss_rounds)}")
        if heap_rounds:
            print(f"heap in use per round (MiB): {' '.join(f'{r:.2f}' for r in heap_rounds)}")
        print(memory_verdict(rss_rounds, args))
        print(f"failed requests: {total_fail}")
        return 1 if total_fail else 0
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=60)
            print(f"server exit code after SIGTERM: {rc}")
        except subprocess.TimeoutExpired:
            proc.kill()
            print("server did not stop within 60 s of SIGTERM: killed")
        os.unlink(log)


if __name__ == "__main__":
    sys.exit(main())
