"""Read operator-editable TOML files into validated models, with errors that name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from config.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a ConfigError that names the file (and line)."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def parse_file(model: type[ModelT], path: Path) -> ModelT:
    """Validate the TOML file at `path` as `model`."""
    data = read_toml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A bad item also fails its list's length check; the item's own message is the useful one.
        specific = [e for e in errors if not any(_is_parent(e["loc"], other["loc"]) for other in errors)]
        raise ConfigError("\n".join(f"{path}: {describe_error(e, data)}" for e in specific)) from None


def _is_parent(loc: tuple, other: tuple) -> bool:
    return len(loc) < len(other) and other[: len(loc)] == loc


def describe_error(error: Any, data: Any) -> str:
    """Render one pydantic error as 'key a.b[2].c: message', naming list items by their id where they have one."""
    parts: list[str] = []
    node = data
    for part in error["loc"]:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            label = f"[{part}]"
            if isinstance(item, dict) and isinstance(item.get("id") or item.get("code"), str):
                label = f"[{part}] ({item.get('id') or item.get('code')})"
            parts[-1:] = [(parts[-1] if parts else "") + label]
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"key {'.'.join(parts)}: {message}" if parts else message
