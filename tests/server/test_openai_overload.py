"""Overload: a server with one slot and no queue (`--parallel 1 --max-queue 0`, started by
openai_test.sh) refuses a second request with 429 in OpenAI's error format and a Retry-After
header, while the first goes on, and takes requests again once the slot is free. The same
server runs with --strict-model-name: another model's name is a 404 model_not_found.
Environment: TQLM_SERVER_URL."""
import os
import time
import unittest

import openai

URL = os.environ["TQLM_SERVER_URL"]


def client():
    return openai.OpenAI(base_url=URL + "/v1", api_key="none", max_retries=0, timeout=120)


class Overload(unittest.TestCase):
    def test_second_request_gets_429_then_served(self):
        c = client()
        model = c.models.list().data[0].id
        stream = c.chat.completions.create(
            model=model, stream=True, max_tokens=200, temperature=0,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}])
        try:
            next(iter(stream))  # the slot is taken
            with self.assertRaises(openai.RateLimitError) as e:
                c.chat.completions.create(model=model, max_tokens=2,
                                          messages=[{"role": "user", "content": "Hi"}])
            self.assertEqual(e.exception.status_code, 429)
            self.assertEqual(e.exception.response.headers.get("retry-after"), "1")
            self.assertEqual(e.exception.body["type"], "rate_limit_error")
        finally:
            stream.close()
        # The hung-up stream frees the slot; the same request is then served.
        # The deadline only ends a hang (no speed is asserted: CI machines are loaded).
        deadline = time.time() + 240
        while True:
            try:
                r = c.chat.completions.create(model=model, max_tokens=2,
                                              messages=[{"role": "user", "content": "Hi"}])
                break
            except openai.RateLimitError:
                self.assertLess(time.time(), deadline, "the slot was never freed")
                time.sleep(0.1)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_strict_model_name(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(model="nope", max_tokens=2,
                                             messages=[{"role": "user", "content": "x"}])
        self.assertEqual(e.exception.code, "model_not_found")


if __name__ == "__main__":
    unittest.main()
