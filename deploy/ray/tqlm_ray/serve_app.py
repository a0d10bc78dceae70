"""Ray Serve application builder, for `serve run` / `serve deploy` / KubeRay's RayService:

    import_path: tqlm_ray.serve_app:build
    args: {config: /path/config.yaml, set: ["replicas.count=4", "routing.policy=prefix"]}

(`python -m tqlm_ray serve` does the same from the command line.)
"""
from __future__ import annotations

from . import config
from .app import build_app


def build(args: dict):
    args = dict(args or {})
    sets = args.pop("set", []) or []
    if isinstance(sets, str):
        sets = [sets]
    path = args.pop("config", None)
    if args:
        raise config.ConfigError(f"application args: unknown {sorted(args)} (known: config, set)")
    return build_app(config.load(path, [config.parse_override(s) for s in sets]))
