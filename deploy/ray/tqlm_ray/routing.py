"""Request routing: which replica gets a request.

`prefix`: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018). The key
is the part of the prompt that requests share (the system messages and tool definitions, or the
first `prefix_chars` characters of the conversation when there are none), hashed onto a ring of
virtual nodes. The request goes to the first replica clockwise from the key whose in-flight
count stays below the bound max(imbalance x mean, mean + slack), the mean counting this request,
so a popular prefix spills over to the next replica on the ring (always the same one) instead of
piling up: load is the tie-breaker, and no replica holds more than
max(ceil(imbalance * (total + 1) / n), ceil((total + 1) / n) + slack) requests. The absolute
`slack` (like SGLang's cache-aware router's absolute threshold) keeps a light load from
spilling: queueing a request or two behind its cached prefix costs less than a cold prefill
elsewhere, and evicting that replica's own prefixes to make room for it.
Adding or removing a replica moves only the keys of its arc: the other replicas keep their
prompt caches.

`round_robin` and `least_loaded` are the baselines.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from typing import Any, Iterable, Mapping, Sequence

POLICIES = ("prefix", "round_robin", "least_loaded")


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    return json.dumps(content, sort_keys=True)


def routing_key(path: str, body: Mapping[str, Any], prefix_chars: int) -> str:
    """The text whose hash picks the replica ('' when there is nothing to go by)."""
    if path.endswith("/chat/completions"):
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            return ""
        tools = body.get("tools")
        head = json.dumps(tools, sort_keys=True) if tools else ""
        for m in messages:
            if isinstance(m, Mapping) and m.get("role") in ("system", "developer"):
                head += "\x00" + _content_text(m.get("content"))
            else:
                break
        if head:
            return "H" + head  # system prompt + tools: the shared head, hashed whole
        text = "".join(
            f"{m.get('role')}\x00{_content_text(m.get('content'))}\x00"
            for m in messages
            if isinstance(m, Mapping)
        )
        return "P" + text[:prefix_chars]
    prompt = body.get("prompt")
    if isinstance(prompt, list):  # a batch or token ids: the first element
        prompt = prompt[0] if prompt else ""
    if not isinstance(prompt, str):
        prompt = json.dumps(prompt)
    return "P" + prompt[:prefix_chars]


class HashRing:
    def __init__(self, names: Iterable[str], virtual_nodes: int = 64):
        self.virtual_nodes = virtual_nodes
        self._points: list[int] = []
        self._owners: list[str] = []
        self.names: list[str] = []
        for n in names:
            self.add(n)

    def add(self, name: str) -> None:
        if name in self.names:
            return
        self.names.append(name)
        for v in range(self.virtual_nodes):
            p = _h64(f"{name}#{v}")
            i = bisect.bisect(self._points, p)
            self._points.insert(i, p)
            self._owners.insert(i, name)

    def remove(self, name: str) -> None:
        if name not in self.names:
            return
        self.names.remove(name)
        keep = [(p, o) for p, o in zip(self._points, self._owners) if o != name]
        self._points = [p for p, _ in keep]
        self._owners = [o for _, o in keep]

    def walk(self, key: str) -> list[str]:
        """Distinct replicas in ring order starting at the key's position."""
        if not self._points:
            return []
        i = bisect.bisect(self._points, _h64(key)) % len(self._points)
        seen: list[str] = []
        for k in range(len(self._points)):
            o = self._owners[(i + k) % len(self._points)]
            if o not in seen:
                seen.append(o)
                if len(seen) == len(self.names):
                    break
        return seen


def load_bound(total_inflight: int, n: int, imbalance: float, slack: int = 0) -> int:
    """A replica may take the request being placed if it holds fewer than this many."""
    mean = (total_inflight + 1) / max(1, n)
    return max(1, math.ceil(imbalance * mean), math.ceil(mean) + slack)


class Chooser:
    """Picks a replica name among `ready` given each one's in-flight count."""

    def __init__(self, policy: str, imbalance: float = 1.25, virtual_nodes: int = 64,
                 slack: int = 2):
        if policy not in POLICIES:
            raise ValueError(f"routing policy {policy!r}: one of {', '.join(POLICIES)}")
        if imbalance < 1.0:
            raise ValueError(f"routing imbalance {imbalance}: must be >= 1.0")
        if slack < 0:
            raise ValueError(f"routing slack {slack}: must be >= 0")
        self.policy = policy
        self.imbalance = imbalance
        self.slack = slack
        self.last_primary: str | None = None  # the ring's first choice for the last prefix pick
        self.ring = HashRing([], virtual_nodes)
        self._rr = 0

    def sync(self, names: Sequence[str]) -> None:
        """Makes the ring hold exactly `names` (the replicas that can take requests)."""
        for n in list(self.ring.names):
            if n not in names:
                self.ring.remove(n)
        for n in names:
            self.ring.add(n)

    def choose(self, key: str, load: Mapping[str, int], exclude: Iterable[str] = ()) -> str | None:
        excluded = set(exclude)
        self.last_primary = None
        names = [n for n in self.ring.names if n in load and n not in excluded]
        if not names:
            return None
        if self.policy == "round_robin":
            ordered = sorted(names)
            self._rr += 1
            return ordered[self._rr % len(ordered)]
        if self.policy == "least_loaded" or not key:
            return min(sorted(names), key=lambda n: load[n])
        total = sum(load[n] for n in names)
        bound = load_bound(total, len(names), self.imbalance, self.slack)
        walk = [n for n in self.ring.walk(key) if n in names]
        self.last_primary = walk[0] if walk else None
        for n in walk:
            if load[n] < bound:
                return n
        return min(sorted(names), key=lambda n: load[n])  # unreachable: some replica is below the mean
