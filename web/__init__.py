"""The aiohttp web app: middlewares, health check, and later the staff console and JSON API."""
