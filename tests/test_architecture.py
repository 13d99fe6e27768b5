"""House rules anyone can read: which part may import which, and the README documents every setting."""

import ast
from pathlib import Path

import pytest

from config.settings import describe_settings

ROOT = Path(__file__).resolve().parent.parent

# part -> top-level modules it must never import
FORBIDDEN = {
    "nlp": {"telegram", "aiohttp", "sqlalchemy", "store", "web", "bot", "reporting", "config", "asyncio"},
    "store": {"config", "web", "bot", "reporting", "nlp", "telegram", "aiohttp"},
    "web": {"config", "telegram"},
    "bot": {"config", "web"},
    "reporting": {"config", "web", "bot", "aiohttp"},
}
CHANNEL_FREE = {"telegram", "aiohttp"}  # the conversation engine (bot/ outside bot/channels/) knows no channel


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_does_not_import_what_it_must_not(part):
    offences = []
    for path in (ROOT / part).rglob("*.py"):
        bad = imported_modules(path) & FORBIDDEN[part]
        if part == "bot" and "channels" not in path.parts:
            bad |= imported_modules(path) & CHANNEL_FREE
        offences += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    assert offences == []


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name, _, _ in describe_settings() if f"`{name}`" not in readme]
    assert missing == []
