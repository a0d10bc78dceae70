#!/usr/bin/env python3
"""`tqlm chat` driven through a pseudo-terminal, as a user at a keyboard: a reply stopped with
Ctrl-C returns to the prompt (the partial reply stays in the conversation), /help, /stats,
/save and /load work, an unknown /command is an error and not sent to the model, and Ctrl-C
twice at the prompt ends the chat with exit status 0.
Usage: chat_pty_test.py TQLM_BINARY [MODEL] (default: the installed default model). Exit 77
(skip) when the model is missing."""
import json
import os
import pty
import select
import sys
import tempfile
import time

CACHE = os.environ.get("TQLM_CACHE", os.path.expanduser("~/.cache/tqlm"))
TQLM = sys.argv[1]
MODEL = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.exists(MODEL):
    print("model not installed: skip")
    sys.exit(77)

HANG = 300  # seconds: only ends a hang; every wait is for output, not a time bound

pid, fd = pty.fork()
if pid == 0:
    os.environ["TQLM_CACHE"] = tempfile.mkdtemp()  # history file out of the user's cache
    os.execv(TQLM, [TQLM, "chat", "-m", MODEL, "-t", "2", "-c", "2048", "-n", "400", "--temp", "0"])

buf = b""


def expect(pattern, what):
    """Reads until `pattern` appears in the output after the last match."""
    global buf
    deadline = time.time() + HANG
    while pattern.encode() not in buf:
        if time.time() > deadline:
            raise SystemExit(f"FAIL {what}: no '{pattern}' in output: {buf[-600:]!r}")
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                raise SystemExit(f"FAIL {what}: chat ended; output: {buf[-600:]!r}")
            if not data:
                raise SystemExit(f"FAIL {what}: chat ended; output: {buf[-600:]!r}")
            buf += data
    i = buf.index(pattern.encode()) + len(pattern)
    seen, buf = buf[:i], buf[i:]
    print(f"ok   {what}")
    return seen.decode(errors="replace")


def send(text):
    os.write(fd, text.encode())


expect("> ", "prompt")
send("/bogus\r")
expect("unknown command /bogus", "unknown command is an error")
expect("> ", "prompt after the error")
send("/help\r")
expect("/save FILE", "help")
QUESTION = "Tell me a very long story about a dragon and a knight."
send(QUESTION + "\r")
expect(QUESTION, "the line is echoed")
# Some reply text, then Ctrl-C: the reply stops and the prompt comes back.
deadline = time.time() + HANG
while len(buf.strip()) < 60 and time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 1.0)
    if r:
        buf += os.read(fd, 4096)
send("\x03")
expect("[stopped]", "Ctrl-C stops the reply")
expect("> ", "prompt after the stop")
send("/stats\r")
expect("KV cache", "stats")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "conv.json")
    send(f"/save {path}\r")
    expect("messages written", "save")
    msgs = json.load(open(path))["messages"]
    roles = [m["role"] for m in msgs]
    if roles != ["user", "assistant"] or not msgs[1]["content"].strip():
        raise SystemExit(f"FAIL saved conversation: {msgs!r}")
    if any("bogus" in m["content"] or "/help" in m["content"] for m in msgs):
        raise SystemExit("FAIL a /command reached the conversation")
    print("ok   saved: the user turn and the stopped partial reply")
    send("/reset\r")
    expect("cleared", "reset")
    send(f"/load {path}\r")
    expect("2 messages loaded", "load")
expect("> ", "prompt after load")
send("\x03")
expect("Ctrl-C again", "first Ctrl-C at the prompt only warns")
expect("> ", "prompt after the warning")
send("\x03")
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
if code != 0:
    raise SystemExit(f"FAIL exit status {code} after Ctrl-C twice")
print("ok   Ctrl-C twice at the prompt exits 0")
