"""The deployment's configuration: YAML file + command-line overrides, checked up front.

Every key is optional; see deploy/ray/config.example.yaml for all of them with their defaults.
A wrong key, type or value is an error that names it (ConfigError), never a silent default.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from .routing import POLICIES

REPO = Path(__file__).resolve().parents[3]

DEFAULTS: dict[str, Any] = {
    "tqlm": {
        "binary": "",  # '' -> $TQLM_BINARY, else <repo>/build/tqlm, else `tqlm` on PATH
        "model": "smollm2",  # a GGUF path or an installed model's name (tqlm models)
        "threads": 1,  # -t of each replica
        "args": [],  # more `tqlm serve` flags, e.g. [--parallel, "2", -c, "2048"]
        "host": "auto",  # address the replicas listen on: auto = the Ray node's IP
    },
    "replicas": {"count": 2, "min": 1, "max": 4, "num_cpus": None},  # num_cpus None -> threads
    "routing": {"policy": "prefix", "imbalance": 1.25, "slack": 2, "prefix_chars": 1024,
                "virtual_nodes": 64},
    "health": {"interval_s": 1.0, "timeout_s": 2.0, "failures": 3, "start_timeout_s": 180.0},
    "autoscale": {"enabled": False, "target_queue": 2.0, "up_after_s": 10.0, "down_after_s": 60.0},
    "proxy": {"request_timeout_s": 600.0, "wait_ready_s": 30.0, "max_ongoing": 256},
    "http": {"host": "127.0.0.1", "port": 8000, "admin_key": ""},
}

# Flags the deployment sets itself on every replica.
_OWNED_FLAGS = {"--port", "--host", "-t", "--threads", "-m", "--model"}


class ConfigError(ValueError):
    pass


def _merge(base: dict, over: dict, where: str) -> None:
    for k, v in over.items():
        name = f"{where}.{k}" if where else str(k)
        if k not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"config: unknown key '{name}' (known here: {known})")
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"config: '{name}' must be a mapping, got {type(v).__name__}")
            _merge(base[k], v, name)
        else:
            base[k] = v


def _num(cfg: dict, section: str, key: str, kind: type, lo: float | None = None) -> None:
    v = cfg[section][key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    if not ok:
        raise ConfigError(f"config: '{section}.{key}' must be a {kind.__name__}, got {v!r}")
    if lo is not None and v < lo:
        raise ConfigError(f"config: '{section}.{key}' = {v} must be >= {lo}")
    cfg[section][key] = kind(v)


def parse_override(text: str) -> dict:
    """'routing.policy=round_robin' -> {'routing': {'policy': 'round_robin'}} (value as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    path, value = text.split("=", 1)
    out: dict = {}
    cur = out
    parts = path.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = yaml.safe_load(value)
    return out


def resolve_binary(binary: str) -> str:
    if not binary:
        binary = os.environ.get("TQLM_BINARY", "")
    if not binary:
        local = REPO / "build" / "tqlm"
        binary = str(local) if local.exists() else (shutil.which("tqlm") or str(local))
    return str(Path(binary).expanduser().resolve())


def load(path: str | None = None, overrides: list[dict] | None = None,
         check_files: bool = True) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path}: not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: must be a mapping at the top level")
        _merge(cfg, data, "")
    for o in overrides or []:
        _merge(cfg, o, "")
    return validate(cfg, check_files)


def validate(cfg: dict, check_files: bool = True) -> dict:
    t = cfg["tqlm"]
    _num(cfg, "tqlm", "threads", int, 1)
    if not isinstance(t["args"], list) or not all(isinstance(a, (str, int, float)) for a in t["args"]):
        raise ConfigError("config: 'tqlm.args' must be a list of strings")
    t["args"] = [str(a) for a in t["args"]]
    owned = [a for a in t["args"] if a.split("=", 1)[0] in _OWNED_FLAGS]
    if owned:
        raise ConfigError(f"config: 'tqlm.args' may not set {', '.join(owned)}: use tqlm.model, "
                          "tqlm.threads, tqlm.host (each replica's port is chosen at start)")
    if not isinstance(t["model"], str) or not t["model"]:
        raise ConfigError("config: 'tqlm.model' must be a GGUF path or a model name")
    if not isinstance(t["host"], str) or not t["host"]:
        raise ConfigError("config: 'tqlm.host' must be an address or 'auto'")
    t["binary"] = resolve_binary(t["binary"] or "")
    if check_files:
        if not os.access(t["binary"], os.X_OK):
            raise ConfigError(f"config: tqlm binary {t['binary']} not found or not executable "
                              "(build it: scripts/build.sh, or set tqlm.binary / $TQLM_BINARY)")
        m = t["model"]
        if "/" in m or m.endswith(".gguf"):
            if not Path(m).expanduser().is_file():
                raise ConfigError(f"config: model file {m} not found")
            t["model"] = str(Path(m).expanduser().resolve())
    r = cfg["replicas"]
    for k in ("count", "min", "max"):
        _num(cfg, "replicas", k, int, 0 if k == "min" else 1)
    if r["num_cpus"] is None:
        r["num_cpus"] = float(t["threads"])
    _num(cfg, "replicas", "num_cpus", float, 0)
    if not r["min"] <= r["count"] <= r["max"]:
        raise ConfigError(f"config: need replicas.min <= replicas.count <= replicas.max, got "
                          f"{r['min']} <= {r['count']} <= {r['max']}")
    ro = cfg["routing"]
    if ro["policy"] not in POLICIES:
        raise ConfigError(f"config: 'routing.policy' = {ro['policy']!r}: one of {', '.join(POLICIES)}")
    _num(cfg, "routing", "imbalance", float, 1.0)
    _num(cfg, "routing", "slack", int, 0)
    _num(cfg, "routing", "prefix_chars", int, 1)
    _num(cfg, "routing", "virtual_nodes", int, 1)
    _num(cfg, "health", "interval_s", float, 0.05)
    _num(cfg, "health", "timeout_s", float, 0.05)
    _num(cfg, "health", "failures", int, 1)
    _num(cfg, "health", "start_timeout_s", float, 1)
    if not isinstance(cfg["autoscale"]["enabled"], bool):
        raise ConfigError("config: 'autoscale.enabled' must be true or false")
    _num(cfg, "autoscale", "target_queue", float, 0)
    _num(cfg, "autoscale", "up_after_s", float, 0)
    _num(cfg, "autoscale", "down_after_s", float, 0)
    _num(cfg, "proxy", "request_timeout_s", float, 1)
    _num(cfg, "proxy", "wait_ready_s", float, 0)
    _num(cfg, "proxy", "max_ongoing", int, 1)
    _num(cfg, "http", "port", int, 0)
    if cfg["http"]["port"] > 65535:
        raise ConfigError(f"config: 'http.port' = {cfg['http']['port']} not in range 0-65535")
    if not isinstance(cfg["http"]["host"], str):
        raise ConfigError("config: 'http.host' must be an address")
    if not isinstance(cfg["http"]["admin_key"], str):
        raise ConfigError("config: 'http.admin_key' must be a string ('' : no key)")
    return cfg
