"""The command line: help on every command, exit codes, and clear messages for bad settings or databases."""

import time

import click
import pytest

from config.app import VERSION
from config.cli import cli, main


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert VERSION in capsys.readouterr().out


@pytest.mark.parametrize("path", [(), *command_paths(cli)], ids=lambda p: " ".join(p) or "closeloop")
def test_every_command_has_help(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: closeloop")
    assert len(out.splitlines()) > 2


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command 'frobnicate'" in capsys.readouterr().err


def test_settings_typo_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "closeloop.toml"
    config.write_text('data_dir = "state"\n[http]\nprot = 1\n', encoding="utf-8")
    assert main(["--config", str(config), "db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"closeloop: {config}: key http.prot: unknown key (did you mean 'port'?)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closeloop.toml"]


def test_broken_taxonomy_stops_run_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    taxonomy = tmp_path / "taxonomy.toml"
    taxonomy.write_text("[[categories]]\nid = 3\n", encoding="utf-8")
    monkeypatch.setenv("CLOSELOOP_FILES_TAXONOMY", str(taxonomy))
    assert main(["run"]) == 2
    assert f"closeloop: {taxonomy}: " in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_db_upgrade_creates_then_is_a_no_op(database_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLOSELOOP_DATABASE_URL", database_url)
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(tmp_path))
    assert main(["db", "upgrade"]) == 0
    assert "database upgraded from empty to" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    current, head = capsys.readouterr().out.splitlines()
    assert current.removeprefix("current: ") == head.removeprefix("head: ")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:hunter2@127.0.0.1:1/closeloop",  # nothing listens: refused at once
        "postgresql://postgres:hunter2@10.255.255.1:5432/closeloop",  # a black hole: only the timeout ends it
    ],
    ids=["refused", "unroutable"],
)
def test_unreachable_database_is_a_clear_error_within_10_seconds(url, capsys, monkeypatch):
    monkeypatch.setenv("CLOSELOOP_DATABASE_URL", url)
    monkeypatch.setenv("CLOSELOOP_DATABASE_CONNECT_TIMEOUT", "3")
    started = time.monotonic()
    assert main(["db", "upgrade"]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith("closeloop: ")
    assert "Traceback" not in err
    assert "hunter2" not in err


def test_config_check_summarises_the_operator_files(capsys):
    assert main(["config", "check"]) == 0
    assert "settings ok; 2 branches" in capsys.readouterr().out


def test_config_show_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("CLOSELOOP_TELEGRAM_TOKEN", "42:very-secret")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out
    assert "CLOSELOOP_TELEGRAM_API_URL" in out
