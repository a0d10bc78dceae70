"""tqlm on Ray Serve: N `tqlm serve` replicas behind one OpenAI-compatible, prefix-aware endpoint.

    python -m tqlm_ray serve --config deploy/ray/config.example.yaml
See docs/DEPLOY.md.
"""
__version__ = "0.1.0"
