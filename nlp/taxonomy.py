"""The complaint taxonomy: categories (English and Chinese names, description, examples) and their owners.

Plain validated data; config/ reads the operator's file into it, and every part that needs categories uses it.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Short enough that "a|<conversation>|<step>|<option>" fits Telegram's 64-byte button data.
IDENTIFIER = r"^[a-z][a-z0-9_]{0,23}$"


class Strict(BaseModel):
    """A file section: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Bilingual(Strict):
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


def reject_duplicates(what: str, values: list[str]) -> None:
    repeated = sorted(value for value, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate {what}: {', '.join(repeated)}")


class Examples(Strict):
    """Example phrases per language: the anchors that let a new category work without retraining."""

    en: tuple[str, ...] = Field(min_length=1)
    zh: tuple[str, ...] = Field(min_length=1)


class Department(Strict):
    id: str = Field(pattern=IDENTIFIER)
    name: Bilingual


class Category(Strict):
    id: str = Field(pattern=IDENTIFIER)
    name: Bilingual
    description: Bilingual
    examples: Examples
    department: str


class Taxonomy(Strict):
    version: int = Field(1, ge=1)
    departments: tuple[Department, ...] = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        reject_duplicates("departments", [d.id for d in self.departments])
        reject_duplicates("categories", [c.id for c in self.categories])
        reject_duplicates("categories (English name)", [c.name.en.casefold() for c in self.categories])
        reject_duplicates("categories (Chinese name)", [c.name.zh for c in self.categories])
        known = {d.id for d in self.departments}
        for category in self.categories:
            if category.department not in known:
                raise ValueError(
                    f"category {category.id!r} names department {category.department!r}, "
                    f"which is not among the departments ({', '.join(sorted(known))})"
                )
        return self

    def category(self, category_id: str) -> Category:
        return next(c for c in self.categories if c.id == category_id)
