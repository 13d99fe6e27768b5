"""The [smtp], [webhook] and [reporting] settings: names, file keys, validation, and secrets kept out of sight."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest

from config.cli import main
from config.errors import ConfigError
from config.settings import describe_settings, env_names, load_settings


def test_the_new_sections_have_defaults_that_need_nothing_set():
    settings = load_settings({})
    assert settings.smtp.host is None
    assert (settings.smtp.port, settings.smtp.security, settings.smtp.timeout) == (587, "starttls", 30.0)
    assert (settings.webhook.url, settings.webhook.timeout, settings.webhook.max_attempts) == (None, 10.0, 10)
    reporting = settings.reporting
    assert (reporting.min_responses, reporting.digest_weekday, reporting.digest_time) == (10, "monday", time(8, 0))
    assert reporting.case_alert_channels == ("telegram", "email")


@pytest.mark.parametrize(
    ("variable", "keys"),
    [
        ("CLOSELOOP_SMTP_HOST", ("smtp", "host")),
        ("CLOSELOOP_SMTP_PORT", ("smtp", "port")),
        ("CLOSELOOP_SMTP_SECURITY", ("smtp", "security")),
        ("CLOSELOOP_SMTP_USERNAME", ("smtp", "username")),
        ("CLOSELOOP_SMTP_PASSWORD", ("smtp", "password")),
        ("CLOSELOOP_SMTP_SENDER", ("smtp", "sender")),
        ("CLOSELOOP_SMTP_TIMEOUT", ("smtp", "timeout")),
        ("CLOSELOOP_WEBHOOK_URL", ("webhook", "url")),
        ("CLOSELOOP_WEBHOOK_SECRET", ("webhook", "secret")),
        ("CLOSELOOP_WEBHOOK_TIMEOUT", ("webhook", "timeout")),
        ("CLOSELOOP_WEBHOOK_MAX_ATTEMPTS", ("webhook", "max_attempts")),
        ("CLOSELOOP_REPORTING_MIN_RESPONSES", ("reporting", "min_responses")),
        ("CLOSELOOP_REPORTING_DIGEST_WEEKDAY", ("reporting", "digest_weekday")),
        ("CLOSELOOP_REPORTING_DIGEST_TIME", ("reporting", "digest_time")),
        ("CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS", ("reporting", "case_alert_channels")),
    ],
)
def test_every_new_variable_maps_onto_its_key(variable, keys):
    assert env_names()[variable] == keys


def test_file_keys_are_read_and_the_environment_wins(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[smtp]\nhost = "mail.bank.internal"\nport = 25\nsecurity = "none"\nsender = "closeloop@bank.example"\n'
        '[webhook]\nurl = "https://hooks.bank.internal/closeloop"\nsecret = "from-file"\nmax_attempts = 4\n'
        '[reporting]\nmin_responses = 5\ndigest_weekday = "friday"\ndigest_time = 17:30:00\n'
        'case_alert_channels = ["email"]\n',
        encoding="utf-8",
    )
    environ = {"CLOSELOOP_SMTP_PORT": "2525", "CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS": "telegram, email"}

    settings = load_settings(environ, path)

    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == ("mail.bank.internal", 2525, "none")
    assert settings.webhook.url == "https://hooks.bank.internal/closeloop"
    assert settings.webhook.secret.get_secret_value() == "from-file"
    assert settings.webhook.max_attempts == 4
    assert (settings.reporting.min_responses, settings.reporting.digest_weekday) == (5, "friday")
    assert settings.reporting.digest_time == time(17, 30)
    assert settings.reporting.case_alert_channels == ("telegram", "email")


def test_variables_read_as_an_operator_writes_them():
    settings = load_settings(
        {
            "CLOSELOOP_REPORTING_DIGEST_WEEKDAY": "Friday",
            "CLOSELOOP_REPORTING_DIGEST_TIME": "07:45",
            "CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS": "email,email",
        }
    )
    assert settings.reporting.digest_weekday == "friday"
    assert settings.reporting.digest_time == time(7, 45)
    assert settings.reporting.case_alert_channels == ("email",)


def test_an_empty_channel_list_in_a_file_turns_case_alerts_off(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[reporting]\ncase_alert_channels = []\n", encoding="utf-8")
    assert load_settings({}, path).reporting.case_alert_channels == ()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"CLOSELOOP_SMTP_HOST": "mail"},
            r"^settings \[smtp\]: e-mail needs a sender address \(CLOSELOOP_SMTP_SENDER\)$",
        ),
        ({"CLOSELOOP_SMTP_USERNAME": "closeloop"}, r"set both username and password"),
        ({"CLOSELOOP_SMTP_SECURITY": "ssl"}, r"CLOSELOOP_SMTP_SECURITY: .*'none', 'starttls' or 'tls'"),
        ({"CLOSELOOP_WEBHOOK_URL": "https://hooks.example"}, r"CLOSELOOP_WEBHOOK_SECRET"),
        ({"CLOSELOOP_WEBHOOK_URL": "ftp://x", "CLOSELOOP_WEBHOOK_SECRET": "s"}, r"http:// or https://"),
        ({"CLOSELOOP_WEBHOOK_MAX_ATTEMPTS": "0"}, r"CLOSELOOP_WEBHOOK_MAX_ATTEMPTS: .*greater than or equal to 1"),
        ({"CLOSELOOP_REPORTING_DIGEST_WEEKDAY": "someday"}, r"CLOSELOOP_REPORTING_DIGEST_WEEKDAY"),
        ({"CLOSELOOP_REPORTING_DIGEST_TIME": "25:00"}, r"CLOSELOOP_REPORTING_DIGEST_TIME"),
        (
            {"CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS": "telegram,fax"},
            r"^environment variable CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS: Input should be 'telegram' or 'email' "
            r"\(got 'fax'\)$",
        ),
        ({"CLOSELOOP_REPORTING_MIN_RESPONSES": "0"}, r"CLOSELOOP_REPORTING_MIN_RESPONSES"),
    ],
)
def test_a_wrong_value_stops_the_start_naming_what_to_fix(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back: main() points it at this test's captured stderr, closed once the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_config_show_masks_the_smtp_password_and_the_webhook_secret(capsys, monkeypatch):
    monkeypatch.setenv("CLOSELOOP_SMTP_HOST", "mail.bank.internal")
    monkeypatch.setenv("CLOSELOOP_SMTP_SENDER", "closeloop@bank.example")
    monkeypatch.setenv("CLOSELOOP_SMTP_USERNAME", "closeloop")
    monkeypatch.setenv("CLOSELOOP_SMTP_PASSWORD", "smtp-pass-5521")
    monkeypatch.setenv("CLOSELOOP_WEBHOOK_URL", "https://hooks.bank.internal/closeloop")
    monkeypatch.setenv("CLOSELOOP_WEBHOOK_SECRET", "hook-secret-9034")

    assert main(["config", "show"]) == 0

    out = capsys.readouterr().out
    assert "smtp-pass-5521" not in out
    assert "hook-secret-9034" not in out
    assert "mail.bank.internal" in out
    assert "CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS" in out
    assert "[default: telegram,email]" in out


def test_defaults_are_listed_as_an_operator_would_write_them():
    shown = {name: default for name, default, _ in describe_settings()}
    assert shown["CLOSELOOP_REPORTING_DIGEST_TIME"] == "08:00"
    assert shown["CLOSELOOP_REPORTING_CASE_ALERT_CHANNELS"] == "telegram,email"
    assert shown["CLOSELOOP_SMTP_PASSWORD"] == ""
