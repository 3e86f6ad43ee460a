"""Typed application state: every long-lived object the app holds, under one `web.AppKey` each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from solaris.settings import Settings

if TYPE_CHECKING:
    from solaris.metrics import Metrics
    from solaris.services import Services

SETTINGS = web.AppKey("settings", Settings)
PG = web.AppKey("pg", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SERVICES: web.AppKey[Services] = web.AppKey("services")
