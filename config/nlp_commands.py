"""`closeloop nlp ...` and `closeloop worker`: train, evaluate and run the analysis from the command line."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from config.app import Catalog, load_analysis, load_catalog, open_database
from config.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "eval-data"
BINARY = {"1": "positive", "0": "negative", "pos": "positive", "neg": "negative"}
CHUNK = 512


def analyzer_for(settings: Settings, catalog: Catalog | None = None, *, category_set: str | None = None):
    return load_analysis(settings, catalog or load_catalog(settings), category_set=category_set)


@click.group()
def nlp() -> None:
    """Train, evaluate and apply the text analysis."""


@nlp.command()
@click.option("--data", "data_root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help=f"folder of public labelled data (default: {DEFAULT_DATA} when present)")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="where the heads go (default: nlp/artifacts; DATA_DIR/heads with corrections)")  # fmt: skip
@click.option("--corrections/--no-corrections", default=None,
              help="learn from staff label corrections in the database (default: when there are any)")  # fmt: skip
@click.pass_obj
def train(settings: Settings, data_root: Path | None, out: Path | None, corrections: bool | None) -> None:
    """Rebuild the sentiment and category heads from licensed data, our own labelled comments and, where staff
    corrected labels, the bank's corrections (those heads stay in its data directory, used from then on)."""
    from nlp.corpus import correction_examples
    from nlp.encoder import Encoder
    from nlp.loading import ARTIFACTS, own_heads_path
    from nlp.training import train_shipped

    extra = []
    if corrections is not False:
        rows, problem = asyncio.run(_corrections(settings))
        if corrections and (problem or not rows):
            raise click.UsageError(f"--corrections: {problem or 'the database holds no label corrections yet'}")
        extra = correction_examples(rows)
    root = data_root or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    target = out or (own_heads_path(settings.data_dir) if extra else ARTIFACTS)
    click.echo(f"{len(extra)} staff corrections; writing the heads to {target}")
    encoder = Encoder.load(settings.nlp.model, cache_dir=settings.data_dir / "models", num_threads=settings.nlp.threads)
    catalog = load_catalog(settings)
    metadata = train_shipped(root, target, encoder, catalog.taxonomy, extra=extra, progress=click.echo)
    click.echo(json.dumps(metadata["metrics"], indent=2))


async def _corrections(settings: Settings) -> tuple[list[tuple[str, str | None, list[str]]], str | None]:
    """The staff's corrections, or why there are none to read (no database yet is no error for training)."""
    from store import StoreError, current_revision
    from store.analysis_queue import corrections

    database = open_database(settings)
    try:
        await database.ping()
        if await current_revision(database) is None:
            return [], "the database has no tables yet (run `closeloop db upgrade`)"
        return await corrections(database), None
    except StoreError as exc:
        return [], str(exc)
    finally:
        await database.dispose()


@nlp.command("train-categories")
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True)
@click.option("--text-column", required=True)
@click.option("--label-column", required=True)
@click.option("--name", required=True, help="the set's name; select it with CLOSELOOP_NLP_CATEGORIES=NAME")
@click.pass_obj
def train_categories(settings: Settings, data_file: Path, text_column: str, label_column: str, name: str) -> None:
    """Train a category set from a bank's own labelled history (a CSV of text and label)."""
    from nlp.encoder import Encoder
    from nlp.loading import category_set_path
    from nlp.training import train_label_set
    from nlp.views import views_for_training

    if not name.replace("-", "").replace("_", "").isalnum():
        raise click.BadParameter("use letters, digits, - and _ only", param_hint="--name")
    texts, labels = _labelled_rows(data_file, text_column, label_column)
    cache_dir = settings.data_dir / "models"
    encoder = Encoder.load(settings.nlp.model, cache_dir=cache_dir, num_threads=settings.nlp.threads)
    view = views_for_training(texts, cache_dir=cache_dir, threads=settings.nlp.threads)
    head, held_out = train_label_set(texts, labels, encoder, view=view)
    path = category_set_path(settings.data_dir, name)
    head.save(path)
    click.echo(f"{len(texts)} rows, {len(head.labels)} labels, reading {encoder.version} and {view.name}; "
               f"held-out 10%:\n{held_out.table()}")  # fmt: skip
    click.echo(f"saved {path}; select it with CLOSELOOP_NLP_CATEGORIES={name}")


@nlp.command("eval")
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True)
@click.option("--text-column", required=True)
@click.option("--label-column", required=True)
@click.option("--task", type=click.Choice(["sentiment", "categories"]), required=True)
@click.option("--categories", "category_set", default=None, help="a trained category set (default: the setting)")
@click.pass_obj
def evaluate(
    settings: Settings, data_file: Path, text_column: str, label_column: str, task: str, category_set: str | None
) -> None:
    """Print accuracy, macro-F1 and the confusion matrix on a labelled CSV."""
    from nlp.training import predict_labels, score

    texts, labels = _labelled_rows(data_file, text_column, label_column)
    analyzer = analyzer_for(settings, category_set=category_set)
    if task == "sentiment":
        labels = [BINARY.get(label.lower(), label.lower()) for label in labels]
        probabilities = analyzer.sentiment_probabilities(texts)
        predicted = predict_labels(analyzer.sentiment_labels, probabilities, binary="neutral" not in set(labels))
    else:
        predicted = analyzer.top_categories(texts)
    click.echo(score(labels, predicted).table())


@nlp.command()
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True)
@click.option("--text-column", required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.pass_obj
def analyze(settings: Settings, data_file: Path, text_column: str, out: Path) -> None:
    """Analyse every row of a CSV (also how a bank imports historical feedback); memory stays bounded."""
    from tqdm import tqdm

    analyzer = analyzer_for(settings)
    total = _count_rows(data_file)
    with out.open("w", encoding="utf-8", newline="") as fh, tqdm(total=total, unit="rows", file=sys.stderr) as bar:
        writer = csv.writer(fh)
        writer.writerow(["row", "language", "masked_text", "sentiment", "p_negative", "p_neutral", "p_positive",
                         "categories", "aspects", "flags"])  # fmt: skip
        for start, texts in _chunks(data_file, text_column):
            for offset, result in enumerate(analyzer.analyze(texts)):
                scores = result.sentiment_scores
                writer.writerow([
                    start + offset, result.language, result.masked_text, result.sentiment,
                    scores.get("negative", 0), scores.get("neutral", 0), scores.get("positive", 0),
                    json.dumps([[c, s] for c, s in result.categories if s >= 0.5]),
                    json.dumps([dataclasses.asdict(a) for a in result.aspects], ensure_ascii=False),
                    json.dumps([dataclasses.asdict(f) for f in result.flags], ensure_ascii=False),
                ])  # fmt: skip
            bar.update(len(texts))
    click.echo(f"wrote {total} rows to {out}")


@nlp.command()
@click.pass_obj
def reanalyze(settings: Settings) -> None:
    """Queue every feedback for analysis under the current model version; earlier results are kept."""
    from store.analysis_queue import requeue_for

    version = analyzer_for(settings).version

    async def _requeue() -> int:
        database = open_database(settings)
        try:
            await database.ping()
            return await requeue_for(database, version)
        finally:
            await database.dispose()

    click.echo(f"{asyncio.run(_requeue())} feedback queued for model {version}")


@click.command()
@click.pass_obj
def worker(settings: Settings) -> None:
    """Run the analysis worker as its own process (several may share a PostgreSQL database)."""
    from config.worker import AnalysisWorker

    catalog = load_catalog(settings)

    async def _run() -> None:
        database = open_database(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await database.ping()
            job = AnalysisWorker(database, lambda: analyzer_for(settings, catalog), batch_size=settings.nlp.batch_size)
            await job.run(stop)
        finally:
            await database.dispose()

    asyncio.run(_run())


def _labelled_rows(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for row in _rows(path, [text_column, label_column]):
        if row[text_column].strip() and row[label_column].strip():
            texts.append(row[text_column])
            labels.append(row[label_column].strip())
    if len(set(labels)) < 2:
        raise click.UsageError(f"{path}: need at least two different labels in column {label_column!r}")
    return texts, labels


def _chunks(path: Path, text_column: str) -> Iterator[tuple[int, list[str]]]:
    batch, start = [], 0
    for index, row in enumerate(_rows(path, [text_column])):
        batch.append(row[text_column] or "")
        if len(batch) == CHUNK:
            yield start, batch
            batch, start = [], index + 1
    if batch:
        yield start, batch


def _rows(path: Path, columns: list[str]) -> Iterator[dict[str, str]]:
    """Read a CSV lazily; a missing column or bytes that aren't UTF-8 stop with a message naming them."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise click.UsageError(
                    f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(reader.fieldnames or [])})"
                )
            for line, row in enumerate(reader, start=2):
                if any(row.get(c) is None for c in columns):
                    raise click.UsageError(f"{path}: line {line} has fewer fields than the header")
                yield row
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except csv.Error as exc:
        raise click.UsageError(f"{path}: not a readable CSV ({exc})") from None


def _count_rows(path: Path) -> int:
    return sum(1 for _ in _rows(path, []))
