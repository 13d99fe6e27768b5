"""Typed application keys: what the composition root puts into the aiohttp app for handlers to use."""

from aiohttp import web

from store import Database

DATABASE = web.AppKey("database", Database)
VERSION = web.AppKey("version", str)
