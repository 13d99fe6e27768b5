"""Typed settings: defaults, then an optional TOML file, then CLOSELOOP_* environment variables."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from config.errors import ConfigError
from config.files import read_toml

ENV_PREFIX = "CLOSELOOP_"
PACKAGE_DIR = Path(__file__).resolve().parent
# Variables that share the prefix but are read by the test suite, not by the product.
ENV_NOT_SETTINGS = frozenset({"CLOSELOOP_TEST_DATABASE_URL"})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL; empty means SQLite at DATA_DIR/closeloop.db (postgresql://... works)"
    )
    connect_timeout: float = Field(5.0, gt=0, le=60, description="seconds to wait for the database to answer")
    auto_upgrade: bool = Field(True, description="apply pending migrations when `closeloop run` starts")


class HttpSettings(Section):
    host: str = Field("127.0.0.1", description="address the web server listens on")
    port: int = Field(8080, ge=1, le=65535, description="port the web server listens on")
    public_url: str | None = Field(
        None, description="external base URL for links and QR codes; defaults to http://HOST:PORT"
    )


class TelegramSettings(Section):
    token: SecretStr | None = Field(None, description="Bot API token; without it only the web chat runs")
    api_url: str = Field("https://api.telegram.org/bot", description="Bot API base URL (ends in /bot)")
    webhook_url: str | None = Field(None, description="public HTTPS URL for webhook mode; empty means polling")
    webhook_secret: SecretStr | None = Field(None, description="secret token Telegram sends with each webhook")
    username: str | None = Field(None, description="the bot's @username, for deep links in QR codes")
    max_messages_per_second: float = Field(
        30.0, ge=0, description="outgoing rate limit (Telegram allows about 30/s per bot); 0 turns it off"
    )

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_accepts_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("webhook mode needs webhook_secret (CLOSELOOP_TELEGRAM_WEBHOOK_SECRET)")
        return self


class PrivacySettings(Section):
    salt: SecretStr | None = Field(
        None, description="key for hashing customer ids; default: generated once into DATA_DIR/secret.key"
    )


class NlpSettings(Section):
    model: str | None = Field(
        None,
        description="Hugging Face id or local path of a sentence encoder; empty: the packaged multilingual-e5-small",
    )
    categories: str | None = Field(
        None, description="a category set trained with `closeloop nlp train-categories`; empty: the taxonomy file"
    )
    worker: bool = Field(
        True, description="analyse feedback inside `closeloop run`; false when `closeloop worker` runs"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="feedback analysed per batch")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads for the model; empty: all cores")


class FilesSettings(Section):
    branches: Path = Field(PACKAGE_DIR / "branches.toml", description="branches and counters")
    survey: Path = Field(PACKAGE_DIR / "survey.toml", description="the conversation script")
    taxonomy: Path = Field(PACKAGE_DIR / "taxonomy.toml", description="complaint categories and departments")
    flags: Path = Field(PACKAGE_DIR / "flags.toml", description="rules that flag serious feedback for staff")


class Settings(Section):
    data_dir: Path = Field(Path("data"), description="where the SQLite database and caches live")
    timezone: str = Field("UTC", description="IANA time zone for reports and schedules")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging level")
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    telegram: TelegramSettings = TelegramSettings()
    privacy: PrivacySettings = PrivacySettings()
    nlp: NlpSettings = NlpSettings()
    files: FilesSettings = FilesSettings()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from exc
        return value

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'closeloop.db'}"

    @property
    def public_url(self) -> str:
        return (self.http.public_url or f"http://{self.http.host}:{self.http.port}").rstrip("/")


def env_names() -> dict[str, tuple[str, ...]]:
    """Map every CLOSELOOP_* variable name onto its key path in Settings."""
    names: dict[str, tuple[str, ...]] = {}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section):
            for sub in section.model_fields:
                names[f"{ENV_PREFIX}{name}_{sub}".upper()] = (name, sub)
        else:
            names[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return names


def load_settings(environ: Mapping[str, str], path: Path | None = None) -> Settings:
    """Build Settings from defaults, the TOML file at `path` (if any) and `environ`, later winning.

    Raises:
        ConfigError: naming the file or variable, the key and what is wrong.
    """
    layers: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    if path is not None:
        _merge(layers, origins, _read_settings_file(path), origin=str(path))
    _merge(layers, origins, _env_layer(environ), origin="environment")
    try:
        settings = Settings.model_validate(layers)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None
    return _absolute(settings)


def _read_settings_file(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    # Paths written in a file mean "next to this file", as an operator reading it would expect.
    base = path.resolve().parent
    if isinstance(data.get("data_dir"), str):
        data["data_dir"] = str(base / data["data_dir"])
    files = data.get("files")
    if isinstance(files, dict):
        data["files"] = {k: str(base / v) if isinstance(v, str) else v for k, v in files.items()}
    return data


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    known = env_names()
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        keys = known.get(name)
        if keys is None:
            hint = difflib.get_close_matches(name, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"environment variable {name}: not a Closeloop setting{suggestion}")
        if value == "":
            continue  # an empty variable means "not set", as in most shells' conventions
        target = layer
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return layer


def _merge(into: dict[str, Any], origins: dict[tuple[str, ...], str], layer: Mapping[str, Any], *, origin: str) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            for sub, subvalue in value.items():
                into[key][sub] = subvalue
                origins[(key, sub)] = origin
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
            origins[(key,)] = origin
            if isinstance(value, Mapping):
                origins.update({(key, sub): origin for sub in value})


def _describe(exc: ValidationError, origins: Mapping[tuple[str, ...], str]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        origin = origins.get(loc) or origins.get(loc[:1]) or "defaults"
        if origin == "environment":
            where = f"environment variable {ENV_PREFIX}{'_'.join(loc).upper()}"
        else:
            where = f"{origin}: key {'.'.join(loc)}"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(loc)
        elif "input" in error and not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def _suggest(loc: tuple[str, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    hint = difflib.get_close_matches(loc[-1], model.model_fields, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _absolute(settings: Settings) -> Settings:
    files = settings.files.model_copy(
        update={name: Path(value).expanduser().resolve() for name, value in settings.files}
    )
    return settings.model_copy(update={"data_dir": settings.data_dir.expanduser().resolve(), "files": files})


def describe_settings() -> list[tuple[str, str, str]]:
    """List (environment variable, default, help) for every setting, for the README and `config show`."""
    rows = []
    for name, keys in env_names().items():
        field = Settings.model_fields[keys[0]]
        if len(keys) == 2:
            field = field.annotation.model_fields[keys[1]]  # type: ignore[union-attr]
        default = field.default
        shown = "" if default is None else str(default)
        if isinstance(default, Path) and default.is_absolute():
            shown = f"config/{default.name}"
        rows.append((name, shown, field.description or ""))
    return rows
