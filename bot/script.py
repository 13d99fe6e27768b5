"""The survey script: the steps of the conversation, their question types, texts and branching.

Operators write it as TOML (config/survey.toml); config/ validates the file into these models.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from nlp.taxonomy import IDENTIFIER, Bilingual, Strict, reject_duplicates


class StepType(StrEnum):
    CHOICE = "choice"
    RATING = "rating"
    TEXT = "text"
    YES_NO = "yes_no"
    CONTACT = "contact"
    MESSAGE = "message"
    FOLLOWUP = "followup"  # asks which category the latest comment is about, only when that adds information


class Scale(StrEnum):
    CSAT = "csat"  # 1-5
    NPS = "nps"  # 0-10
    CES = "ces"  # 1-7


SCALE_RANGE = {Scale.CSAT: (1, 5), Scale.NPS: (0, 10), Scale.CES: (1, 7)}


class Option(Strict):
    id: str = Field(pattern=IDENTIFIER)
    label: Bilingual


class Branch(Strict):
    """Go to `goto` when an answer is within [min, max] (ratings) or equals `equals` (choices, yes/no).

    The answer tested is this step's, or that of the step named in `step`.
    """

    goto: str
    step: str | None = None
    min: int | None = None
    max: int | None = None
    equals: str | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> Branch:
        if self.min is None and self.max is None and self.equals is None:
            raise ValueError("a branch needs at least one of min, max or equals")
        return self


class Step(Strict):
    id: str = Field(pattern=IDENTIFIER)
    type: StepType
    text: Bilingual
    scale: Scale | None = None
    options: tuple[Option, ...] = ()
    optional: bool = False
    branches: tuple[Branch, ...] = ()
    next: str | None = None  # None ends the conversation
    # A yes here lets staff write to the customer later through the bot. Asked only on channels that keep an
    # address to write to (the engine is told which); skipped, with nothing stored, everywhere else.
    reply_consent: bool = False

    @model_validator(mode="after")
    def _fits_type(self) -> Step:
        if self.type is StepType.RATING and self.scale is None:
            raise ValueError(f"rating step {self.id!r} needs a scale (csat, nps or ces)")
        if self.reply_consent and self.type is not StepType.YES_NO:
            raise ValueError(f"step {self.id!r}: reply_consent needs a yes_no step")
        if self.type is StepType.CHOICE and not self.options:
            raise ValueError(f"choice step {self.id!r} needs options")
        reject_duplicates(f"options in step {self.id}", [o.id for o in self.options])
        return self

    def targets(self) -> list[str]:
        return [b.goto for b in self.branches] + ([self.next] if self.next else [])


class Survey(Strict):
    version: int = Field(1, ge=1)
    start: str
    repeat_window_days: int = Field(30, ge=0, description="one completed survey per respondent per branch per window")
    steps: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _connected(self) -> Survey:
        ids = [s.id for s in self.steps]
        reject_duplicates("step ids", ids)
        known = set(ids)
        if self.start not in known:
            raise ValueError(f"start step {self.start!r} is not among the steps")
        if self.step(self.start).type is not StepType.YES_NO:
            raise ValueError(f"start step {self.start!r} must be a yes_no step: it asks for consent")
        if self.step(self.start).reply_consent:
            raise ValueError(f"start step {self.start!r} cannot ask for reply consent: nothing is stored before it")
        for step in self.steps:
            for target in step.targets():
                if target not in known:
                    raise ValueError(f"step {step.id!r} goes to {target!r}, which is not a step")
            for branch in step.branches:
                if branch.step is not None and branch.step not in known:
                    raise ValueError(f"a branch of step {step.id!r} tests step {branch.step!r}, which is not a step")
        return self

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)
