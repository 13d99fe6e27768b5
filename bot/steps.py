"""Each step type's question (text and buttons) and how a customer's input becomes that step's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot import buttons
from bot.answers import MAX_TEXT_CHARS, clean_text, parse_number, parse_phone, parse_yes_no
from bot.events import Button, Incoming, Kind, Reply
from bot.script import SCALE_RANGE, Step, StepType
from bot.texts import TEXTS, text
from nlp.masking import mask_text
from nlp.taxonomy import Taxonomy

OTHER = "other"
SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Accepted:
    value: Any
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    notice: str


def prompt(step: Step, *, conversation_id: int, language: str, offered: tuple[str, ...], taxonomy: Taxonomy) -> Reply:
    """The question of `step` as a reply with the buttons its type needs."""
    question = step.text.get(language)

    def button(label: str, value: str) -> Button:
        return Button(label, buttons.answer(conversation_id, step.id, value))

    match step.type:
        case StepType.YES_NO:
            row = (button(text("yes", language), "yes"), button(text("no", language), "no"))
            return Reply(question, buttons=(row,), expects="buttons")
        case StepType.RATING:
            low, high = SCALE_RANGE[step.scale]
            values = [button(str(v), str(v)) for v in range(low, high + 1)]
            rows = (tuple(values),) if len(values) <= 7 else (tuple(values[:6]), tuple(values[6:]))
            return Reply(question, buttons=rows, expects="buttons")
        case StepType.CHOICE:
            options = [button(o.label.get(language), o.id) for o in step.options]
            return Reply(question, buttons=_pairs(options), expects="buttons")
        case StepType.FOLLOWUP:
            names = {c.id: c.name.get(language) for c in taxonomy.categories}
            options = [button(names[cid], cid) for cid in offered if cid in names]
            options.append(button(text("something_else", language), OTHER))
            return Reply(question, buttons=_pairs(options), expects="buttons")
        case StepType.TEXT:
            skip = ((button(text("skip", language), SKIP),),) if step.optional else ()
            return Reply(question, buttons=skip, expects="text")
        case StepType.CONTACT:
            no_thanks = ((button(text("no_thanks", language), SKIP),),)
            return Reply(question, buttons=no_thanks, ask_contact=text("share_phone", language), expects="contact")
        case _:
            return Reply(question)


def interpret(step: Step, event: Incoming, *, language: str, offered: tuple[str, ...]) -> Accepted | Rejected:
    """Turn typed or pressed input into the answer for `step`, or say why it can't be one."""
    if event.kind is Kind.CHOICE:
        return _from_button(step, event.choice or "", offered)
    if event.kind is Kind.CONTACT:
        if step.type is not StepType.CONTACT:
            return Rejected(_hint_for(step, language))
        phone = parse_phone(event.text or "")
        return Accepted(phone) if phone else Rejected(text("bad_phone", language))
    if event.kind is not Kind.TEXT:
        return Rejected(_hint_for(step, language))
    return _from_text(step, event.text or "", language=language, offered=offered)


def _from_button(step: Step, value: str, offered: tuple[str, ...]) -> Accepted | Rejected:
    match step.type:
        case StepType.YES_NO if value in ("yes", "no"):
            return Accepted(value == "yes")
        case StepType.RATING if value.isdigit() and _in_scale(step, int(value)):
            return Accepted(int(value))
        case StepType.CHOICE if value in {o.id for o in step.options}:
            return Accepted(value)
        case StepType.FOLLOWUP if value in offered or value == OTHER:
            return Accepted(value)
        case StepType.TEXT if value == SKIP and step.optional:
            return Accepted(None)
        case StepType.CONTACT if value == SKIP:
            return Accepted(None)
    return Rejected("")  # a forged value for this step: the caller treats it as an unreadable button


def _from_text(step: Step, raw: str, *, language: str, offered: tuple[str, ...]) -> Accepted | Rejected:
    match step.type:
        case StepType.TEXT:
            return _free_text(step, raw, language)
        case StepType.RATING:
            number = parse_number(raw)
            if number is not None and _in_scale(step, number):
                return Accepted(number)
            low, high = SCALE_RANGE[step.scale]
            return Rejected(text("rating_range", language, low=low, high=high))
        case StepType.YES_NO:
            answer = parse_yes_no(raw)
            return Rejected(text("use_buttons", language)) if answer is None else Accepted(answer)
        case StepType.CHOICE:
            chosen = next((o.id for o in step.options if _same(raw, o.label.en, o.label.zh)), None)
            return Accepted(chosen) if chosen else Rejected(text("use_buttons", language))
        case StepType.CONTACT:
            if _same(raw, *TEXTS["no_thanks"].values()) or parse_yes_no(raw) is False:
                return Accepted(None)
            phone = parse_phone(raw)
            return Accepted(phone) if phone else Rejected(text("bad_phone", language))
        case _:
            return Rejected(text("use_buttons", language))


def _free_text(step: Step, raw: str, language: str) -> Accepted | Rejected:
    cleaned = clean_text(raw)
    if not cleaned.text:
        return Rejected(text("empty_text", language))
    notices = (text("truncated", language, limit=MAX_TEXT_CHARS),) if cleaned.truncated else ()
    # Card and phone numbers, e-mail addresses and ID numbers never reach the database.
    return Accepted(mask_text(cleaned.text), notices)


def _hint_for(step: Step, language: str) -> str:
    return text("text_only", language) if step.type is StepType.TEXT else text("use_buttons", language)


def _in_scale(step: Step, value: int) -> bool:
    low, high = SCALE_RANGE[step.scale]
    return low <= value <= high


def _same(raw: str, *labels: str) -> bool:
    wanted = raw.strip().casefold()
    return any(wanted == label.casefold() for label in labels)


def _pairs(items: list[Button]) -> tuple[tuple[Button, ...], ...]:
    return tuple(tuple(items[i : i + 2]) for i in range(0, len(items), 2))
