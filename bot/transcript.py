"""The conversation so far as question/answer pairs, for the web chat page and /mydata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.script import StepType, Survey
from bot.texts import text
from nlp.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class Exchange:
    question: str
    answer: str


def exchanges(survey: Survey, taxonomy: Taxonomy, answers: dict[str, Any], language: str) -> list[Exchange]:
    """Pair each answered step's question with the answer as the customer would recognise it."""
    shown = []
    for step in survey.steps:
        if step.id not in answers or step.type is StepType.MESSAGE:
            continue
        value = answers[step.id]
        if value is None and step.type is StepType.FOLLOWUP:
            continue  # the follow-up was not asked: the comment was specific enough
        shown.append(Exchange(step.text.get(language), _display(step, value, taxonomy, language)))
    return shown


def _display(step: Any, value: Any, taxonomy: Taxonomy, language: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return text("yes" if value else "no", language)
    if step.type is StepType.CHOICE:
        return next((o.label.get(language) for o in step.options if o.id == value), str(value))
    if step.type is StepType.FOLLOWUP:
        names = {c.id: c.name.get(language) for c in taxonomy.categories}
        return names.get(value, text("something_else", language))
    return str(value)
