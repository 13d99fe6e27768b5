"""Typed application keys the channels read from the aiohttp app."""

from aiohttp import web

from bot.engine import Engine

ENGINE = web.AppKey("engine", Engine)
PUBLIC_URL = web.AppKey("public_url", str)
