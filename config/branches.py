"""The branch list: codes, names, regions and counters, as the operator keeps them in a TOML file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from config.files import parse_file
from nlp.taxonomy import Bilingual, Strict, reject_duplicates

# A Telegram deep-link payload holds at most 64 characters of A-Za-z0-9_-; "<branch>-<counter>" must fit,
# and so must a consent button's data, which carries the payload too.
CODE = r"^[A-Za-z0-9_]{1,24}$"


class CounterEntry(Strict):
    code: str = Field(pattern=CODE)
    name: Bilingual


class BranchEntry(Strict):
    code: str = Field(pattern=CODE)
    name: Bilingual
    region: str | None = None
    counters: tuple[CounterEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_counters(self) -> BranchEntry:
        reject_duplicates(f"counters in branch {self.code}", [c.code for c in self.counters])
        return self


class BranchList(Strict):
    branches: tuple[BranchEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_branches(self) -> BranchList:
        reject_duplicates("branch codes", [b.code.upper() for b in self.branches])
        return self


def load_branches(path: Path) -> BranchList:
    return parse_file(BranchList, path)
