"""One `tqlm serve` process, owned by one Ray actor (scheduled by Ray onto any node with the CPUs).

The process dies with its actor (PR_SET_PDEATHSIG), so killing the actor, or the router that
owns it, never leaves an orphan server behind.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request

import ray

_PORT_LINE = re.compile(r"on http://([^\s:/]+):(\d+) ")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@ray.remote(num_cpus=1, max_restarts=0)
class TqlmReplica:
    def __init__(self, name: str, binary: str, model: str, threads: int, args: list[str], host: str):
        self.name = name
        node_ip = ray.util.get_node_ip_address()
        self.host = node_ip if host == "auto" else host
        self.connect_host = node_ip if self.host in ("0.0.0.0", "::") else self.host
        log_dir = os.path.join(tempfile.gettempdir(), "tqlm-ray")
        os.makedirs(log_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, f"{name}-{os.getpid()}.log")
        self.cmd = [binary, "serve", "-m", model, "-t", str(threads), "--host", self.host,
                    "--port", "0", *args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.port = 0

    def _log_text(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def start(self, timeout_s: float) -> dict:
        """Waits until the server answers /health; its address, pid and node."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"tqlm serve exited with code {rc} during start: "
                                   f"{' '.join(self.cmd)}\n{self.log_tail()}")
            if not self.port:
                m = _PORT_LINE.search(self._log_text())
                if m:
                    self.port = int(m.group(2))
            if self.port:
                try:
                    with urllib.request.urlopen(f"{self.url()}/health", timeout=2) as r:
                        if r.status == 200:
                            return self.info()
                except OSError:
                    pass
            time.sleep(0.1)
        raise TimeoutError(f"tqlm serve did not answer /health within {timeout_s:.0f} s\n"
                           f"{self.log_tail()}")

    def url(self) -> str:
        return f"http://{self.connect_host}:{self.port}"

    def info(self) -> dict:
        return {"url": self.url(), "pid": self.proc.pid, "node": ray.util.get_node_ip_address(),
                "log": self.log_path, "cmd": self.cmd}

    def exit_code(self):
        return self.proc.poll()

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
