"""The simulator's `ark` wire format, mounted under /ark (routes.py)."""

from __future__ import annotations

# (method, path pattern below the /ark prefix, route name, handler)
ROUTES: list = []
