"""The simulator's `fal` wire format, mounted under /fal (routes.py)."""

from __future__ import annotations

# (method, path pattern below the /fal prefix, route name, handler)
ROUTES: list = []
