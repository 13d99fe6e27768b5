"""What console pages need to know from the settings and the operator's files, handed over by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class ConsoleOptions:
    """How the console shows things.

    ``timezone``: local days and weeks, times shown; ``min_responses``: fewest responses behind a shown figure;
    ``category_names``, ``flag_names`` and ``department_names``: id -> {"en": ..., "zh": ...};
    ``departments``: category id -> the id of the department that owns its tickets.
    """

    timezone: str = "UTC"
    min_responses: int = 10
    category_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    flag_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    departments: Mapping[str, str] = field(default_factory=dict)
    department_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def category_name(self, category: str, language: str) -> str:
        """A category's name in ``language``; the id itself for a category the taxonomy no longer has."""
        names = self.category_names.get(category)
        return names.get(language, names.get("en", category)) if names else category

    def department_name(self, department: str | None, language: str) -> str:
        """A department's name in ``language``; for one the taxonomy no longer has, its id made readable."""
        names = self.department_names.get(department or "")
        if names:
            return names.get(language, names.get("en", department or ""))
        return (department or "").replace("_", " ").capitalize()


CONSOLE_OPTIONS = web.AppKey("console_options", ConsoleOptions)
