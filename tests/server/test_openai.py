"""The official `openai` client against a running `tqlm serve` (started by openai_test.sh):
chat, streamed chat with a usage chunk, completions, stop strings, the prompt cache, errors
(malformed JSON, wrong types, too-long prompt, 401, 404), a client leaving mid-stream or before
its non-streamed answer (generating or still queued), /metrics.
Environment: TQLM_SERVER_URL, TQLM_API_KEY."""
import json
import os
import re
import socket
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import openai

URL = os.environ["TQLM_SERVER_URL"]
KEY = os.environ.get("TQLM_API_KEY", "none")


def client(key=KEY):
    return openai.OpenAI(base_url=URL + "/v1", api_key=key, max_retries=0, timeout=120)


def raw(method, path, body=None, key=KEY):
    """(status, parsed JSON or text) of a plain HTTP request."""
    req = urllib.request.Request(URL + path, data=body, method=method,
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def send_raw_chat(content, max_tokens):
    """A socket with a non-streamed chat request sent on it (the answer is never read)."""
    body = json.dumps({"max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": content}]}).encode()
    u = urllib.parse.urlsplit(URL)
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % (u.hostname.encode(), KEY.encode(), len(body)) + body)
    return s


# No test bounds how long the server takes (CI machines are loaded): waits poll for the state
# a test expects, and this deadline only turns a hang into a failure (ctest stops the whole
# script at 300 s anyway).
HANG_SECONDS = 240


def wait_for(condition, seconds=HANG_SECONDS):
    """Seconds until condition() held (polling /metrics-style checks), or None on a hang."""
    t0 = time.time()
    while time.time() - t0 < seconds:
        if condition():
            return time.time() - t0
        time.sleep(0.02)
    return None


def metric(name):
    status, text = raw("GET", "/metrics")
    assert status == 200
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, name + " missing from /metrics"
    return float(m.group(1))


class OpenAiClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = client()
        cls.model = cls.c.models.list().data[0].id

    def chat(self, content, **kw):
        kw.setdefault("max_tokens", 12)
        kw.setdefault("temperature", 0)
        return self.c.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": content}], **kw)

    def test_models(self):
        ids = [m.id for m in self.c.models.list().data]
        self.assertEqual(ids, [self.model])
        self.assertIn("SmolLM2", self.model)

    def test_chat(self):
        r = self.chat("What is the capital of France?")
        self.assertEqual(r.object, "chat.completion")
        msg = r.choices[0].message
        self.assertEqual(msg.role, "assistant")
        # Greedy: the same text as `tqlm run --chat` with the same flags (openai_test.sh).
        self.assertEqual(msg.content, os.environ["TQLM_EXPECT_CHAT"])
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 5)
        self.assertTrue(1 <= r.usage.completion_tokens <= 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_greedy_repeat_hits_prompt_cache(self):
        a = self.chat("Name a primary colour.", max_tokens=8)
        hits = metric("tqlm_prompt_cache_hits_total")
        b = self.chat("Name a primary colour.", max_tokens=8)
        self.assertEqual(a.choices[0].message.content, b.choices[0].message.content)
        self.assertGreater(metric("tqlm_prompt_cache_hits_total"), hits)
        self.assertGreater(b.usage.prompt_tokens_details.cached_tokens, 0)

    def test_streamed_chat_with_usage(self):
        want = self.chat("Say hello.", max_tokens=10).choices[0].message.content
        chunks = list(self.chat("Say hello.", max_tokens=10, stream=True,
                                stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        self.assertEqual(text, want)
        finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        self.assertEqual(len(finals), 1)
        self.assertEqual(chunks[-1].choices, [])
        self.assertTrue(1 <= chunks[-1].usage.completion_tokens <= 10)
        self.assertEqual(len({ch.id for ch in chunks}), 1)

    def test_completion_and_stop(self):
        r = self.c.completions.create(model=self.model, prompt="The capital of France is",
                                      max_tokens=6, temperature=0)
        self.assertIn("Paris", r.choices[0].text)
        s = self.c.completions.create(model=self.model, prompt="The capital of France is",
                                      max_tokens=6, temperature=0, stop=["Paris"])
        self.assertNotIn("Paris", s.choices[0].text)
        self.assertEqual(s.choices[0].finish_reason, "stop")
        chunks = list(self.c.completions.create(model=self.model, prompt="The capital of France is",
                                                max_tokens=6, temperature=0, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), r.choices[0].text)

    def test_concurrent_requests_more_than_slots(self):
        results, errors = [], []

        def one(i):
            try:
                r = self.chat("Count to %d." % (i + 3), max_tokens=8, stream=True)
                results.append("".join(ch.choices[0].delta.content or "" for ch in r if ch.choices))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 4)
        self.assertTrue(all(results))

    def test_disconnect_frees_the_slot(self):
        cancelled = metric("tqlm_requests_cancelled_total")
        stream = self.chat("Write a long story about a dragon.", max_tokens=200, stream=True)
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
        wait_for(lambda: metric("tqlm_requests_cancelled_total") > cancelled)
        self.assertGreater(metric("tqlm_requests_cancelled_total"), cancelled)
        wait_for(lambda: metric("tqlm_slots_active") == 0)
        self.assertEqual(metric("tqlm_slots_active"), 0)

    def test_disconnect_non_streamed_frees_the_slot(self):
        # A long greedy answer (counting) that only max_tokens would end, seconds away.
        cancelled = metric("tqlm_requests_cancelled_total")
        generated = metric("tqlm_generated_tokens_total")
        s = send_raw_chat("Count from 1 to 1000, separated by commas.", 256)
        try:
            self.assertIsNotNone(wait_for(lambda: metric("tqlm_generated_tokens_total") >= generated + 4))
        finally:
            s.close()
        freed = wait_for(lambda: metric("tqlm_slots_active") == 0)
        self.assertIsNotNone(freed, "the slot was not freed")
        # No wall-clock bound (CI machines are loaded): that the request stopped early is
        # shown by the token count below, far short of max_tokens.
        self.assertEqual(metric("tqlm_requests_cancelled_total"), cancelled + 1)
        self.assertLess(metric("tqlm_generated_tokens_total") - generated, 256)

    def test_disconnect_while_queued_leaves_the_queue(self):
        # Both slots busy with long streamed answers; a non-streamed request waits, then leaves.
        cancelled = metric("tqlm_requests_cancelled_total")
        streams = [self.chat("Write a long story about a dragon number %d." % i, max_tokens=200,
                             stream=True) for i in range(2)]
        try:
            for st in streams:
                next(iter(st))
            s = send_raw_chat("Hello", 8)
            queued = wait_for(lambda: metric("tqlm_queue_depth") == 1)
            s.close()
            self.assertIsNotNone(queued, "the request was not queued")
            left = wait_for(lambda: metric("tqlm_queue_depth") == 0)
            self.assertIsNotNone(left, "the request did not leave the queue")
            # It left without waiting for a slot: both streams still hold theirs. (No
            # wall-clock bound: CI machines are loaded.)
            self.assertEqual(metric("tqlm_slots_active"), 2)
            self.assertEqual(metric("tqlm_requests_cancelled_total"), cancelled + 1)
        finally:
            for st in streams:
                st.close()
        self.assertIsNotNone(wait_for(lambda: metric("tqlm_slots_active") == 0))

    def test_metrics(self):
        self.chat("Hi", max_tokens=2)
        self.assertGreater(metric("tqlm_generated_tokens_total"), 0)
        self.assertGreater(metric("tqlm_decode_tokens_per_second"), 0)
        self.assertEqual(metric("tqlm_slots"), 2)
        # tq4/tq3 cache: a prompt of a few 64-token blocks is stored compressed, so the prompt
        # cache holds fewer bytes than the same tokens in f16.
        self.chat("Repeat after me: " + "the quick brown fox jumps over the lazy dog. " * 25,
                  max_tokens=1)
        used = metric("tqlm_prompt_cache_bytes_used")
        self.assertGreater(used, 0)
        self.assertLess(used, metric("tqlm_prompt_cache_bytes_f16_equivalent"))

    # ---- errors ----

    def test_malformed_json(self):
        status, body = raw("POST", "/v1/chat/completions", b'{"messages": [')
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        self.assertIn("JSON", body["error"]["message"])

    def test_wrong_types(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.chat("Hi", temperature="hot")
        self.assertIn("temperature", str(e.exception))
        status, body = raw("POST", "/v1/chat/completions",
                           json.dumps({"model": self.model, "messages": "hi"}).encode())
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["param"], "messages")
        status, body = raw("POST", "/v1/chat/completions",
                           json.dumps({"messages": [{"role": "user", "content": 5}]}).encode())
        self.assertEqual(status, 400)

    def test_max_tokens_over_limit(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.chat("Hi", max_tokens=100000)
        self.assertIn("max_tokens", str(e.exception))

    def test_prompt_too_long(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.chat("word " * 2000)
        self.assertIn("tokens over", str(e.exception))
        self.assertEqual(e.exception.code, "context_length_exceeded")

    def test_unauthorized(self):
        with self.assertRaises(openai.AuthenticationError):
            client("wrong-key").models.list()
        status, _ = raw("GET", "/health", key="wrong")
        self.assertEqual(status, 200)  # health needs no key

    def test_chat_logprobs(self):
        r = self.chat("Name a color.", max_tokens=6, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens - (r.choices[0].finish_reason == "stop"))
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(len(t.top_logprobs), 3)
            self.assertEqual(bytes(t.bytes).decode(errors="replace"), t.token)
            # Greedy: the sampled token is the most likely one.
            self.assertEqual(t.top_logprobs[0].token, t.token)
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)
            self.assertGreaterEqual(t.top_logprobs[0].logprob, t.top_logprobs[1].logprob)
        # Streamed: the same tokens and values, spread over the chunks.
        chunks = list(self.c.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "Name a color."}],
            max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, stream=True))
        streamed = [t for ch in chunks if ch.choices and ch.choices[0].logprobs
                    for t in ch.choices[0].logprobs.content]
        self.assertEqual([(t.token, t.logprob) for t in streamed],
                         [(t.token, t.logprob) for t in content])

    def test_completion_logprobs(self):
        r = self.c.completions.create(model=self.model, prompt="The capital of France is",
                                      max_tokens=4, temperature=0, logprobs=2)
        lp = r.choices[0].logprobs
        self.assertEqual("".join(lp.tokens), r.choices[0].text)
        self.assertEqual(len(lp.token_logprobs), len(lp.tokens))
        self.assertEqual(len(lp.top_logprobs[0]), 2)
        self.assertEqual(lp.text_offset[0], 0)

    def test_any_model_name_is_served_and_unknown_path(self):
        # One model served: a client with a fixed model name gets it (as from llama-server),
        # and the response names the model that answered.
        r = self.c.chat.completions.create(
            model="gpt-4o-mini", max_tokens=3, temperature=0,
            messages=[{"role": "user", "content": "Say hello."}])
        self.assertEqual(r.model, self.model)
        status, body = raw("GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertIn("error", body)


if __name__ == "__main__":
    unittest.main()
