"""The complaint taxonomy: categories (English and Chinese names, description, examples) and their owners."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from config.files import Bilingual, Strict, parse_file, reject_duplicates

IDENTIFIER = r"^[a-z][a-z0-9_]{0,47}$"


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


def load_taxonomy(path: Path) -> Taxonomy:
    return parse_file(Taxonomy, path)
