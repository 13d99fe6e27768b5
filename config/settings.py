"""Typed settings: defaults, then an optional TOML file, then CLOSELOOP_* environment variables."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import time
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


class SmtpSettings(Section):
    host: str | None = Field(None, description="SMTP server for e-mailed digests and alerts; empty: no e-mail")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 for starttls, 465 for tls, 25 for none)")
    security: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="none, starttls (upgrade a plain connection; refuse if not offered) or tls"
    )
    username: str | None = Field(None, description="SMTP login; empty: send without logging in")
    password: SecretStr | None = Field(None, description="SMTP password")
    sender: str | None = Field(
        None, description="the From address, e.g. Closeloop <closeloop@bank.example>; needed when host is set"
    )
    timeout: float = Field(30.0, gt=0, le=600, description="seconds to wait for the SMTP server at each step")

    @model_validator(mode="after")
    def _complete(self) -> SmtpSettings:
        if self.host and not self.sender:
            raise ValueError("e-mail needs a sender address (CLOSELOOP_SMTP_SENDER)")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password (CLOSELOOP_SMTP_USERNAME, CLOSELOOP_SMTP_PASSWORD)")
        return self


class WebhookSettings(Section):
    url: str | None = Field(
        None, description="URL that receives case and ticket events as signed JSON POSTs; empty: no webhook"
    )
    secret: SecretStr | None = Field(None, description="key of the X-Closeloop-Signature HMAC; needed when url is set")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the receiver to answer")
    max_attempts: int = Field(10, ge=1, le=100, description="attempts per event before it is marked failed")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _url_needs_secret(self) -> WebhookSettings:
        if self.url and self.secret is None:
            raise ValueError("the webhook needs a secret to sign events (CLOSELOOP_WEBHOOK_SECRET)")
        return self


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
AlertChannel = Literal["telegram", "email"]


class ReportingSettings(Section):
    min_responses: int = Field(
        10, ge=1, description="fewest responses behind a shown figure; smaller groups are hidden (privacy, noise)"
    )
    digest_weekday: Weekday = Field("monday", description="day the weekly digest goes out")
    digest_time: time = Field(time(8, 0), description="local time (CLOSELOOP_TIMEZONE) the weekly digest goes out")
    case_alert_channels: tuple[AlertChannel, ...] = Field(
        ("telegram", "email"), description="channels that carry new-case alerts, comma-separated; empty list: none"
    )

    @field_validator("digest_weekday", mode="before")
    @classmethod
    def _lower_weekday(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("case_alert_channels", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        # An environment variable can only carry a string: "telegram,email".
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        return tuple(dict.fromkeys(value)) if isinstance(value, list | tuple) else value


class TicketsSettings(Section):
    """The operator's part of reporting.complaints.TicketRules, and how often `closeloop run` applies them."""

    window_days: int = Field(
        28, ge=7, le=365, description="days of complaints an improvement-ticket pass looks back over (the window)"
    )
    min_complaints: int = Field(
        5, ge=1, le=10_000, description="complaints about one branch and category in the window that open a ticket"
    )
    negative_share: float = Field(
        0.4,
        gt=0,
        le=1,
        description="share of complaints in a category's feedback that opens a ticket (judged from 10 feedback on)",
    )
    cluster_distance: float = Field(
        0.15, gt=0, lt=2, description="cosine distance up to which complaints count as one problem (per encoder)"
    )
    interval_minutes: int = Field(
        60, ge=0, le=10_080, description="minutes between ticket passes inside `closeloop run`; 0 turns them off"
    )


class FilesSettings(Section):
    branches: Path = Field(PACKAGE_DIR / "branches.toml", description="branches and counters")
    survey: Path = Field(PACKAGE_DIR / "survey.toml", description="the conversation script")
    taxonomy: Path = Field(PACKAGE_DIR / "taxonomy.toml", description="complaint categories and departments")
    flags: Path = Field(PACKAGE_DIR / "flags.toml", description="rules that flag serious feedback for staff")
    subscriptions: Path = Field(
        PACKAGE_DIR / "subscriptions.toml", description="e-mail addresses that receive digests or case alerts"
    )


class Settings(Section):
    data_dir: Path = Field(Path("data"), description="where the SQLite database and caches live")
    timezone: str = Field("UTC", description="IANA time zone for reports and schedules")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging level")
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    telegram: TelegramSettings = TelegramSettings()
    privacy: PrivacySettings = PrivacySettings()
    nlp: NlpSettings = NlpSettings()
    smtp: SmtpSettings = SmtpSettings()
    webhook: WebhookSettings = WebhookSettings()
    reporting: ReportingSettings = ReportingSettings()
    tickets: TicketsSettings = TicketsSettings()
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
        # A list item's index is not part of a variable's name: CLOSELOOP_X_Y, not CLOSELOOP_X_Y_1.
        keys = tuple(part for part in loc if not part.isdigit())
        origin = origins.get(keys) or origins.get(loc[:1]) or "defaults"
        if len(keys) == 1 and _is_section(keys[0]):
            # A rule across a section's keys (a host needs a sender): the message names the variables itself.
            where = f"settings [{keys[0]}]" if origin == "environment" else f"{origin}: [{keys[0]}]"
        elif origin == "environment":
            where = f"environment variable {ENV_PREFIX}{'_'.join(keys).upper()}"
        else:
            where = f"{origin}: key {'.'.join(loc)}"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(loc)
        elif "input" in error and not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def _is_section(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, Section)


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
        elif isinstance(default, tuple):
            shown = ",".join(map(str, default))  # as the variable is written
        elif isinstance(default, time):
            shown = default.strftime("%H:%M")
        rows.append((name, shown, field.description or ""))
    return rows
