"""`closeloop export`: feedback, analyses and metrics as CSV files and an Excel workbook for analysts."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path

import click

from config.app import open_database
from config.settings import Settings

FORMATS = {"csv": frozenset({"csv"}), "xlsx": frozenset({"xlsx"}), "both": frozenset({"csv", "xlsx"})}


@click.command("export")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the CSV files and closeloop-export.xlsx (created when missing).")  # fmt: skip
@click.option("--from", "first_day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First local day (CLOSELOOP_TIMEZONE), included. Default: the first feedback's.")  # fmt: skip
@click.option("--to", "last_day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last local day, included. Default: today.")  # fmt: skip
@click.option("--branch", default=None, help="A branch code: only that branch's feedback and metrics.")
@click.option("--format", "file_format", type=click.Choice(sorted(FORMATS)), default="both", show_default=True,
              help="csv, xlsx (one workbook; a sheet holds at most 1,048,575 rows) or both.")  # fmt: skip
@click.pass_obj
def export(
    settings: Settings,
    out_dir: Path,
    first_day: datetime | None,
    last_day: datetime | None,
    branch: str | None,
    file_format: str,
) -> None:
    """Write feedback (masked comments only), analyses and metrics as CSV and Excel files."""
    # Imported here so that pandas and openpyxl load for this command only, not at every start of the server.
    from reporting.export import ExportRequest, export_files
    from reporting.scope import ReportingError

    first, last = _day(first_day), _day(last_day)
    if first and last and last < first:
        raise click.BadParameter(f"{last} is before --from {first}", param_hint="'--to'")
    request = ExportRequest(
        out_dir=out_dir,
        timezone=settings.timezone,
        first_day=first,
        last_day=last,
        branch=branch,
        formats=FORMATS[file_format],
        min_responses=settings.reporting.min_responses,
    )

    async def _export():
        database = open_database(settings)
        try:
            await database.ping()
            return await export_files(database, request)
        finally:
            await database.dispose()

    try:
        result = asyncio.run(_export())
    except ReportingError as exc:
        raise click.BadParameter(str(exc), param_hint="'--branch'") from None
    except OSError as exc:
        if exc.filename is None:  # not a file: let the CLI's outer handler report it
            raise
        raise click.BadParameter(f"cannot write into {out_dir}: {exc.strerror or exc}", param_hint="'--out'") from None
    click.echo(f"{result.period.label} ({result.period.timezone}): {result.feedback_rows} feedback, "
               f"{result.analysis_rows} analyses")  # fmt: skip
    for path in result.files:
        click.echo(f"wrote {path}")
    if result.xlsx_truncated:
        limit = f"{request.xlsx_max_rows:,}"
        click.echo(f"closeloop: workbook sheets stop at {limit} rows (see its notes); the CSV files hold all", err=True)


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None
