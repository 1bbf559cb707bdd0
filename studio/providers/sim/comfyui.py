"""The simulator's `comfyui` wire format, mounted under /comfyui (routes.py)."""

from __future__ import annotations

# (method, path pattern below the /comfyui prefix, route name, handler)
ROUTES: list = []
