"""Settings: defaults, TOML file, environment, and the messages an operator sees when something is wrong."""

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import PACKAGE_DIR, describe_settings, env_names, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file_and_no_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8080
    assert settings.telegram.token is None
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'closeloop.db'}"
    assert settings.files.taxonomy == PACKAGE_DIR / "taxonomy.toml"
    assert not (tmp_path / "data").exists(), "loading settings must not write anything"


def test_environment_overrides_the_file_which_overrides_defaults(tmp_path):
    path = write(tmp_path / "c.toml", '[http]\nport = 9000\nhost = "0.0.0.0"\n[database]\nurl = "sqlite:///x.db"\n')
    settings = load_settings({"CLOSELOOP_HTTP_PORT": "9100", "CLOSELOOP_TIMEZONE": "Asia/Shanghai"}, path)
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"
    assert settings.database.url == "sqlite:///x.db"
    assert settings.timezone == "Asia/Shanghai"


def test_every_nested_key_has_its_environment_name():
    names = env_names()
    for name in [
        "CLOSELOOP_DATABASE_URL",
        "CLOSELOOP_DATA_DIR",
        "CLOSELOOP_HTTP_HOST",
        "CLOSELOOP_HTTP_PORT",
        "CLOSELOOP_TELEGRAM_TOKEN",
        "CLOSELOOP_TELEGRAM_API_URL",
        "CLOSELOOP_TIMEZONE",
    ]:
        assert name in names
    assert names["CLOSELOOP_TELEGRAM_API_URL"] == ("telegram", "api_url")
    assert all(help_text for _, _, help_text in describe_settings()), "every setting needs a help text"


def test_paths_in_a_file_are_relative_to_that_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc" / "c.toml", 'data_dir = "../var"\n[files]\ntaxonomy = "tax.toml"\n')
    settings = load_settings({}, path)
    assert settings.data_dir == tmp_path / "var"
    assert settings.files.taxonomy == tmp_path / "etc" / "tax.toml"


def test_secret_token_is_not_printed(tmp_path):
    settings = load_settings({"CLOSELOOP_TELEGRAM_TOKEN": "123:secret-value"})
    assert settings.telegram.token.get_secret_value() == "123:secret-value"
    assert "secret-value" not in settings.model_dump_json()
    assert "secret-value" not in repr(settings)


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path / "c.toml", "[http]\nprot = 9000\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, path)
    assert str(err.value) == f"{path}: key http.prot: unknown key (did you mean 'port'?)"


def test_unknown_section_is_an_error(tmp_path):
    path = write(tmp_path / "c.toml", '[databse]\nurl = "x"\n')
    with pytest.raises(ConfigError, match=r"key databse: unknown key \(did you mean 'database'\?\)"):
        load_settings({}, path)


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path / "c.toml", '[http]\nport = "eighty"\n')
    with pytest.raises(ConfigError, match=r"c.toml: key http.port: Input should be a valid integer.*'eighty'"):
        load_settings({}, path)


def test_out_of_range_port_from_environment_names_the_variable():
    with pytest.raises(ConfigError, match=r"^environment variable CLOSELOOP_HTTP_PORT: .*less than or equal to 65535"):
        load_settings({"CLOSELOOP_HTTP_PORT": "70000"})


def test_misspelt_environment_variable_is_an_error():
    with pytest.raises(
        ConfigError, match=r"CLOSELOOP_HTTP_PROT: not a Closeloop setting \(did you mean CLOSELOOP_HTTP_PORT\?\)"
    ):
        load_settings({"CLOSELOOP_HTTP_PROT": "1"})


def test_test_suite_variable_is_not_a_setting():
    load_settings({"CLOSELOOP_TEST_DATABASE_URL": "postgresql://x"})


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "c.toml", "[http]\nport = = 1\n")
    with pytest.raises(ConfigError, match=r"c.toml: not valid TOML: .*line 2"):
        load_settings({}, path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: file not found"):
        load_settings({}, tmp_path / "nope.toml")


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ConfigError, match=r"CLOSELOOP_TIMEZONE: unknown time zone 'Mars/Olympus'"):
        load_settings({"CLOSELOOP_TIMEZONE": "Mars/Olympus"})


def test_binary_settings_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"c.toml: "):
        load_settings({}, path)
