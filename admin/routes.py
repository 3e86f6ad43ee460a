"""The admin surface: the JSON API under /api and the panel under /admin."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register the admin API and pages on the main app."""
