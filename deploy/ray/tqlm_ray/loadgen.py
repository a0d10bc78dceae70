"""Bounded load with the official `openai` client: several client threads, a few long system
prompts shared by many requests (the test and bench/ray_routing.py use it)."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import openai

_TOPICS = ["billing", "shipping", "returns", "warranty", "accounts", "privacy", "orders",
           "discounts", "repairs", "subscriptions", "gift cards", "deliveries"]
_VERBS = ["explain", "summarise", "check", "confirm", "describe", "list", "compare", "verify"]
_NOUNS = ["the policy", "the customer's plan", "the invoice", "the delivery date", "the refund",
          "the account status", "the order history", "the replacement part", "the fee schedule"]
QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?",
             "Say hello in Spanish.", "What day comes after Monday?", "Name a large ocean.",
             "What is the opposite of cold?", "How many legs does a cat have?",
             "What colour is the sky on a clear day?", "Name a fruit that is yellow."]


def system_prompts(n: int = 4, sentences: int = 16, seed: int = 7) -> list[str]:
    """n distinct long system prompts (each ~sentences x 12 words), reproducible from seed."""
    out = []
    for k in range(n):
        rng = random.Random(seed * 1000 + k)
        lines = [f"You are support agent number {k} of the Example Company, desk {rng.randint(100, 999)}."]
        for i in range(sentences):
            lines.append(f"Rule {i + 1}: when asked about {rng.choice(_TOPICS)}, {rng.choice(_VERBS)} "
                         f"{rng.choice(_NOUNS)} and then {rng.choice(_VERBS)} {rng.choice(_NOUNS)} "
                         f"in at most {rng.randint(2, 9)} sentences.")
        out.append(" ".join(lines))
    return out


@dataclass
class Record:
    index: int
    system: int
    stream: bool
    start: float
    end: float = 0.0
    ok: bool = False
    replica: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    error: str = ""


@dataclass
class LoadResult:
    records: list[Record] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    def hit_rate(self) -> float:
        ok = [r for r in self.records if r.ok]
        p = sum(r.prompt_tokens for r in ok)
        return sum(r.cached_tokens for r in ok) / p if p else 0.0

    def summary(self) -> dict:
        ok = [r for r in self.records if r.ok]
        return {"requests": len(self.records), "failed": len(self.failed),
                "wall_s": round(self.wall_s, 2),
                "requests_per_s": round(len(ok) / self.wall_s, 3) if self.wall_s else 0.0,
                "prompt_tokens": sum(r.prompt_tokens for r in ok),
                "cached_tokens": sum(r.cached_tokens for r in ok),
                "completion_tokens": sum(r.completion_tokens for r in ok),
                "hit_rate": round(self.hit_rate(), 4),
                "by_replica": {n: sum(r.replica == n for r in ok)
                               for n in sorted({r.replica for r in ok})}}


def plan(n_requests: int, n_systems: int, seed: int, stream_every: int = 0) -> list[tuple[int, int, bool]]:
    """(system prompt index, question index, stream?) per request, reproducible."""
    rng = random.Random(seed)
    return [(rng.randrange(n_systems), rng.randrange(len(QUESTIONS)),
             bool(stream_every) and i % stream_every == stream_every - 1) for i in range(n_requests)]


def one_request(client: openai.OpenAI, system: str, question: str, stream: bool,
                max_tokens: int, rec: Record) -> None:
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    try:
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model="tqlm", messages=msgs, max_tokens=max_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True})
            rec.replica = raw.headers.get("x-tqlm-replica", "")
            parts = []
            for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                if chunk.usage:
                    rec.prompt_tokens = chunk.usage.prompt_tokens
                    rec.completion_tokens = chunk.usage.completion_tokens
                    d = chunk.usage.prompt_tokens_details
                    rec.cached_tokens = (d.cached_tokens or 0) if d else 0
            rec.text = "".join(parts)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="tqlm", messages=msgs, max_tokens=max_tokens, temperature=0)
            rec.replica = raw.headers.get("x-tqlm-replica", "")
            resp = raw.parse()
            rec.text = resp.choices[0].message.content or ""
            rec.prompt_tokens = resp.usage.prompt_tokens
            rec.completion_tokens = resp.usage.completion_tokens
            d = resp.usage.prompt_tokens_details
            rec.cached_tokens = (d.cached_tokens or 0) if d else 0
        rec.ok = True
    except Exception as e:  # noqa: BLE001 (every failure is recorded and counted)
        rec.error = f"{type(e).__name__}: {e}"
    rec.end = time.monotonic()


def run_load(base_url: str, systems: list[str], requests: list[tuple[int, int, bool]],
             clients: int = 4, max_tokens: int = 8, timeout_s: float = 120.0,
             on_done=None) -> LoadResult:
    """Sends `requests` from `clients` threads (each takes the next one when free)."""
    result = LoadResult()
    lock = threading.Lock()
    todo = list(enumerate(requests))

    def worker():
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                               timeout=timeout_s)
        while True:
            with lock:
                if not todo:
                    return
                i, (s, q, stream) = todo.pop(0)
                rec = Record(i, s, stream, time.monotonic())
                result.records.append(rec)
            one_request(client, systems[s], QUESTIONS[q], stream, max_tokens, rec)
            if on_done:
                on_done(rec)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.monotonic() - t0
    result.records.sort(key=lambda r: r.index)
    return result
