"""The `closeloop` command line: run the server, manage the database, check the configuration."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click
from aiohttp import web

from bot.channels.telegram import TelegramStartError
from config.app import VERSION, Catalog, create_app, load_catalog, open_database
from config.demo_commands import demo
from config.digest_commands import digest, manager
from config.errors import ConfigError
from config.nlp_commands import nlp, worker
from config.report_commands import export
from config.settings import Settings, describe_settings, load_settings
from config.staff_commands import staff
from config.subscriptions import load_subscriptions
from config.ticket_commands import tickets
from store import StoreError, current_revision, head_revision, upgrade
from web.auth import ensure_first_admin
from web.keys import DATABASE

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class ServeError(Exception):
    """The server could not start (the port is taken, the address is wrong)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="closeloop")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CLOSELOOP_CONFIG",
    help="TOML settings file (environment variables CLOSELOOP_* override it).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Closeloop: a self-hosted customer-feedback loop."""
    environ = {k: v for k, v in os.environ.items() if k != "CLOSELOOP_CONFIG"}
    settings = load_settings(environ, config_path)
    _configure_logging(settings.log_level)
    ctx.obj = settings


@cli.command()
@click.pass_obj
def run(settings: Settings) -> None:
    """Run the web server (web chat, console, API); Ctrl-C or SIGTERM stops it cleanly."""
    catalog = load_catalog(settings)
    with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
        runner.run(serve(settings, catalog))


@cli.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Create or migrate every table to the newest schema (a no-op when already there)."""

    async def _upgrade() -> tuple[str | None, str | None]:
        database = open_database(settings)
        try:
            await database.ping()
            before = await current_revision(database)
            await upgrade(database)
            return before, await current_revision(database)
        finally:
            await database.dispose()

    before, after = asyncio.run(_upgrade())
    if before == after:
        click.echo(f"database already at revision {after}; nothing to do")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("current")
@click.pass_obj
def db_current(settings: Settings) -> None:
    """Print the database's schema revision and the newest one this version knows."""

    async def _current() -> str | None:
        database = open_database(settings)
        try:
            await database.ping()
            return await current_revision(database)
        finally:
            await database.dispose()

    click.echo(f"current: {asyncio.run(_current()) or 'empty'}\nhead: {head_revision()}")


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.pass_obj
def config_check(settings: Settings) -> None:
    """Validate the settings and the operator files without starting anything."""
    catalog = load_catalog(settings)
    subscriptions = load_subscriptions(settings.files.subscriptions, catalog.branches)
    click.echo(
        f"settings ok; {len(catalog.branches.branches)} branches, {len(catalog.survey.steps)} survey steps, "
        f"{len(catalog.taxonomy.categories)} categories, {len(subscriptions.email)} e-mail subscriptions"
    )


@config_group.command("show")
@click.pass_obj
def config_show(settings: Settings) -> None:
    """Print the effective settings (secrets masked) and every environment variable that sets them."""
    click.echo(settings.model_dump_json(indent=2))
    click.echo("\nEnvironment variables:")
    for name, default, help_text in describe_settings():
        click.echo(f"  {name:<32} {help_text}" + (f" [default: {default}]" if default else ""))


@cli.command()
@click.argument("branch")
@click.option("--counter", help="A counter code of the branch: the codes then lead to that counter.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(),
    show_default="the current directory",
    help="Directory for BRANCH[-COUNTER].png and .svg (created when missing).",
)
@click.pass_obj
def qr(settings: Settings, branch: str, counter: str | None, out_dir: Path) -> None:
    """Write a printable sheet (PNG and SVG) with the Telegram and web-chat QR codes of a branch or counter."""
    # Imported here so that Pillow and segno load for this command only, not at every start of the server.
    from bot import qr as sheets

    branches = load_catalog(settings).branches.branches
    entry = next((b for b in branches if b.code == branch), None)
    if entry is None:
        raise click.UsageError(f"unknown branch {branch!r} (known: {', '.join(b.code for b in branches)})")
    place = next((c for c in entry.counters if c.code == counter), None)
    if counter is not None and place is None:
        known = f"its counters: {', '.join(c.code for c in entry.counters)}" if entry.counters else "it has none"
        raise click.UsageError(f"unknown counter {counter!r} in branch {entry.code} ({known})")
    codes = [sheets.Code(sheets.WEBCHAT_CAPTION, sheets.webchat_url(settings.public_url, entry.code, counter))]
    if settings.telegram.username:
        link = sheets.telegram_link(settings.telegram.username, sheets.deep_link_payload(entry.code, counter))
        codes.insert(0, sheets.Code(sheets.TELEGRAM_CAPTION, link))
    sheet = sheets.Sheet(
        title=sheets.Label(entry.name.en, entry.name.zh),
        subtitle=sheets.Label(place.name.en, place.name.zh) if place else None,
        codes=tuple(codes),
    )
    stem = out_dir / (f"{entry.code}-{counter}" if counter else entry.code)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".png").write_bytes(sheets.render_png(sheet))
        stem.with_suffix(".svg").write_text(sheets.render_svg(sheet), encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot write into {out_dir}: {exc.strerror or exc}", param_hint="'--out'") from None
    click.echo(f"wrote {stem}.png and {stem}.svg")
    if not settings.telegram.username:
        click.echo("closeloop: no Telegram username (CLOSELOOP_TELEGRAM_USERNAME): web-chat code only", err=True)


cli.add_command(nlp)
cli.add_command(worker)
cli.add_command(export)
cli.add_command(digest)
cli.add_command(manager)
cli.add_command(tickets)
cli.add_command(staff)
cli.add_command(demo)


async def serve(settings: Settings, catalog: Catalog) -> None:
    """Run until SIGINT or SIGTERM, then close every resource in reverse order."""
    app = create_app(settings, catalog)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    # Handlers first: a signal that arrives while resources open, or the moment the port answers, is a stop
    # request like any other, not a kill by the default action.
    with _stop_signals() as stop:
        await runner.setup()
        try:
            password = await ensure_first_admin(app[DATABASE])
            if password:
                click.echo(f"No staff users yet: sign in at {settings.public_url}/console/login as 'admin' with the "
                           f"one-time password {password}\n(change it: closeloop staff reset-password --username "
                           "admin)", err=True)  # fmt: skip
            # Everything loaded at start lives as long as the server: moving it out of the collector's reach keeps
            # full collections short (they paused requests by up to 200 ms with a loaded console).
            gc.collect()
            gc.freeze()
            site = web.TCPSite(runner, settings.http.host, settings.http.port)
            try:
                await site.start()
            except OSError as exc:
                raise ServeError(
                    f"cannot listen on {settings.http.host}:{settings.http.port}: {exc.strerror or exc}"
                    " (is another closeloop or another server using this port? set CLOSELOOP_HTTP_PORT)"
                ) from None
            log.info("closeloop %s listening on http://%s:%d", VERSION, settings.http.host, settings.http.port)
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets, for as long as the block runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _fast_loop_factory():
    """uvloop where it is installed (Linux, macOS): the same asyncio, about twice as fast at network I/O."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record, not the stream it was when logging started:
    a caller that swaps sys.stderr (a test capturing output, then closing it) must not leave logging broken."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[_StderrHandler()], force=True
    )
    # Alembic narrates every migration context at INFO; store.migrate logs the one line that matters.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # ONNX Runtime's quantizer logs hundreds of INFO lines on the root logger during the one-time conversion.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_onnx_quantizer)


def _quiet_onnx_quantizer(record: logging.LogRecord) -> bool:
    return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 success, 2 bad input or settings, 1 an unexpected failure."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="closeloop", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        return 1
    except click.ClickException as exc:
        exc.show()
        return EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code
    except (ConfigError, StoreError, ServeError, TelegramStartError) as exc:
        click.echo(f"closeloop: {exc}", err=True)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
