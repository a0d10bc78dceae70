"""The chat page at / in a real headless Chromium, driven over the DevTools protocol: it loads,
names the served model, sends a message typed into it, streams the answer into the page and
ends with a statistics line (tokens/s and the KV cache against f16, from the response).
Usage: test_web_page.py SERVER_URL [API_KEY] [--screenshot FILE.png] [--prompt-file FILE].
Exit 77 (skip) when no Chromium is installed."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client, pinned in scripts/server_env.sh

HANG = 240  # seconds: only ends a hang


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    def opt(name):
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None
    shot = opt("--screenshot")
    prompt_file = opt("--prompt-file")
    args = [a for a in args if a not in (shot, prompt_file)]
    url, key = args[0], (args[1] if len(args) > 1 else "")
    prompt = open(prompt_file).read() if prompt_file else "What is the capital of France?"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("no chromium installed: skip")
        return 77
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1100,760",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return drive(url, key, shot, profile, prompt)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def drive(url, key, shot, profile, prompt):
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + HANG
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        assert time.time() < deadline, "Chromium did not start"
        time.sleep(0.1)
    port = open(port_file).read().split()[0]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
    page = next(t for t in targets if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=HANG)
    ids = iter(range(1, 1 << 30))

    def call(method, **params):
        mid = next(ids)
        ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(expr):
        r = call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(expr, what):
        deadline = time.time() + HANG
        while True:
            v = js(expr)
            if v:
                print(f"ok   {what}")
                return v
            assert time.time() < deadline, f"timed out waiting for: {what}"
            time.sleep(0.2)

    call("Page.enable")
    if key:  # the page keeps settings in localStorage: set the key before it loads
        call("Page.navigate", url=url + "/")
        wait_for("document.readyState === 'complete'", "page loaded")
        js(f"localStorage.setItem('tqlm.api_key', {json.dumps(key)})")
    call("Page.navigate", url=url + "/")
    wait_for("document.readyState === 'complete' && document.getElementById('model') !== null",
             "page loaded")
    model = wait_for("(() => { const t = document.getElementById('model').textContent;"
                     " return t !== 'connecting…' && !t.startsWith('cannot') && t; })()",
                     "the page names the served model")
    js("document.getElementById('temperature').value = '0';"
       "document.getElementById('max_tokens').value = '48';"
       f"document.getElementById('prompt').value = {json.dumps(prompt)};"
       "document.getElementById('form').requestSubmit(); true")
    wait_for("document.querySelector('.msg.user') !== null", "the message appears as the user's")
    # Streaming: text shows up before the answer is done.
    wait_for("(() => { const a = document.querySelector('.msg.assistant .content');"
             " return a && a.textContent.length > 0; })()", "answer text streams into the page")
    wait_for("document.querySelector('.msg.assistant.done') !== null", "the answer completes")
    answer = js("document.querySelector('.msg.assistant .content').textContent")
    stats = js("document.querySelector('.msg.assistant .stats').textContent")
    errors = js("document.querySelectorAll('.error').length")
    print(f"     model {model!r}, answer {answer!r}, stats {stats!r}")
    assert errors == 0, "the page shows an error"
    assert answer.strip(), "empty answer"
    assert "tokens/s" in stats and "KV cache" in stats and "in f16" in stats, stats
    if shot:
        png = call("Page.captureScreenshot", format="png")["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
        print(f"ok   screenshot written to {shot}")
    print("ok   chat page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
