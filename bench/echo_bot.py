"""The baseline for bench/conversations.py: a bare python-telegram-bot echo bot in webhook mode.

It follows PTB's own "custom webhook" example: an aiohttp route puts each update on the application's queue
and answers 200 at once; handlers echo text and answer button presses. No database, no rate limiter.
Usage: python bench/echo_bot.py PORT BOT_API_URL
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web
from telegram import Update
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

TOKEN = "123456:BENCH-token"  # noqa: S105 - a test value for a local stand-in


async def echo(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(update.effective_message.text or "?")


async def pressed(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer()
    await update.effective_chat.send_message(f"pressed {update.callback_query.data}")


async def main(port: int, api_url: str) -> None:
    application: Application = (
        ApplicationBuilder().token(TOKEN).base_url(api_url).updater(None).concurrent_updates(256).build()
    )
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.add_handler(CallbackQueryHandler(pressed))

    async def webhook(request: web.Request) -> web.Response:
        await application.update_queue.put(Update.de_json(await request.json(), application.bot))
        return web.Response(text="ok")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/telegram/webhook", webhook)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    async with application:
        await application.bot.set_webhook(f"http://127.0.0.1:{port}/telegram/webhook")
        await application.start()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        await application.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
