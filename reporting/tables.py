"""Tables written chunk by chunk to CSV files and a write-only Excel workbook, with formula injection neutralised.

openpyxl's write-only workbook streams each sheet to a temporary file, so memory stays flat however many rows
arrive (a normal workbook, which pandas' to_excel builds, holds about 400 bytes per cell: a gigabyte for
100,000 feedback rows). A sheet stops at `cap` rows, at most Excel's own limit; the CSV always has them all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd
from openpyxl import Workbook

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?%?")
EXCEL_MAX_ROWS = 1_048_575  # 1,048,576 rows a sheet, less the header


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix a single quote to text cells starting with =, +, -, @, tab or CR (CSV and Excel formula injection).

    A comment such as ``=HYPERLINK("http://evil", "click")`` would otherwise run when a manager opens the file,
    and openpyxl itself stores any text starting with = as a formula. Plain numbers written as text ("-12",
    "+5%") are left alone: they cannot run.
    """
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.infer_dtype(out[column], skipna=True) not in ("string", "mixed", "mixed-integer"):
            continue
        text = out[column].astype(object)
        starts = text[_is_true(text.str.startswith(FORMULA_PREFIXES))]
        risky = starts[~_is_true(starts.str.fullmatch(PLAIN_NUMBER.pattern))]
        if len(risky):
            text[risky.index] = "'" + risky
        out[column] = text
    return out


class Table:
    """One table's CSV file and workbook sheet; `write` appends a chunk to both."""

    def __init__(self, name: str, csv: IO[str] | None, sheet: Any | None, *, cap: int = EXCEL_MAX_ROWS) -> None:
        self.name, self.csv, self.sheet, self.cap = name, csv, sheet, min(cap, EXCEL_MAX_ROWS)
        self.rows = self.sheet_rows = 0
        self.truncated = False

    def write(self, frame: pd.DataFrame) -> None:
        frame = neutralise_formulas(frame)
        if self.csv is not None:
            frame.to_csv(self.csv, header=self.rows == 0, index=False, lineterminator="\n")
        if self.sheet is not None:
            if self.rows == 0:
                self.sheet.append([str(column) for column in frame.columns])
            room = max(0, self.cap - self.sheet_rows)
            for row in _cells(frame.iloc[:room]):
                self.sheet.append(row)
            self.sheet_rows += min(room, len(frame))
            self.truncated |= room < len(frame)
        self.rows += len(frame)


class TableFiles:
    """The CSV files and the workbook of one export; leaving the `with` block saves the workbook.

    On an exception the workbook is not saved: a half-written export must not look complete.
    """

    def __init__(self, out_dir: Path, names: Sequence[str], *, csv: bool, xlsx: str | None, cap: int) -> None:
        self.out_dir, self.names, self.csv, self.xlsx, self.cap = out_dir, names, csv, xlsx, cap
        self.tables: dict[str, Table] = {}
        self._stack = contextlib.ExitStack()
        self._workbook: Workbook | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        csvs = [self.out_dir / f"{name}.csv" for name in self.names] if self.csv else []
        return tuple(sorted(csvs + ([self.out_dir / self.xlsx] if self.xlsx else [])))

    def __enter__(self) -> TableFiles:
        self._workbook = Workbook(write_only=True) if self.xlsx else None
        for name in self.names:
            handle = None
            if self.csv:
                # utf-8-sig: Excel reads a CSV without the byte-order mark in the local code page, garbling Chinese.
                path = self.out_dir / f"{name}.csv"
                handle = self._stack.enter_context(path.open("w", encoding="utf-8-sig", newline=""))
            sheet = self._workbook.create_sheet(name) if self._workbook is not None else None
            self.tables[name] = Table(name, handle, sheet, cap=self.cap)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._stack.close()
        if self._workbook is not None and exc_type is None:
            self._workbook.save(self.out_dir / self.xlsx)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    @property
    def truncated(self) -> bool:
        return any(table.truncated for table in self.tables.values())

    def add_notes(self, notes: Iterable[tuple[str, str]]) -> None:
        """A last sheet of (item, value) lines saying what the workbook holds and what it left out."""
        if self._workbook is None:
            return
        sheet = self._workbook.create_sheet("notes")
        sheet.append(["item", "value"])
        for row in _cells(pd.DataFrame(list(notes), columns=["item", "value"]).pipe(neutralise_formulas)):
            sheet.append(row)


def _cells(frame: pd.DataFrame) -> Iterable[tuple[Any, ...]]:
    """Rows of plain Python values with None for every kind of missing value (openpyxl writes NaN as text)."""
    plain = frame.astype(object)
    return plain.where(plain.notna(), None).itertuples(index=False, name=None)


def _is_true(values: pd.Series) -> pd.Series:
    """A boolean mask from a .str result that holds NaN where the cell was not text."""
    return values.astype("boolean").fillna(False).astype(bool)
