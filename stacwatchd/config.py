"""The Settings tree: one validated object read from TOML plus ``STACWATCHD_*`` variables.

Everything else in stacwatchd receives these typed objects, never raw dicts or
``os.environ``; validation happens once, at start-up, with errors that name the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stacwatchd.defaults import (
    DEFAULT_DATETIME_TAGS,
    DEFAULT_EXCLUDE,
    DEFAULT_FILENAME_PATTERNS,
    DEFAULT_INCLUDE,
    DEFAULT_SIDECARS,
)
from stacwatchd.errors import ConfigError

__all__ = [
    "CatalogSettings",
    "CollectionSettings",
    "DatetimeRule",
    "ItemRules",
    "LogSettings",
    "MetricsSettings",
    "NotifySettings",
    "NotifyTarget",
    "ObjectStoreSettings",
    "PgstacSettings",
    "Provider",
    "STATE_DIRNAME",
    "Settings",
    "SnsSettings",
    "WatchSettings",
    "WebhookSettings",
    "display_settings",
    "listen_address",
    "load_settings",
    "masked_dsn",
    "missing_watch_folders",
    "require_watches",
]

ENV_PREFIX = "STACWATCHD_"
STATE_DIRNAME = ".stacwatchd"

_DATE_GROUPS = {"year", "month", "day", "hour", "minute", "second", "doy"}
_SEARCHABLE = re.compile(r"[^a-z0-9_-]+")


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


Regex = Annotated[str, AfterValidator(_compiles)]


def searchable(value: str) -> str:
    """Lower-case an identifier the way the best practices ask for searchable fields."""
    return _SEARCHABLE.sub("-", value.strip().lower()).strip("-")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatetimeRule(_Model):
    """One way to find an Item's datetime; rules are tried in order."""

    source: Literal["filename", "gdal", "mtime"]
    pattern: Regex | None = None
    match: Literal["name", "path"] = "name"
    tags: tuple[str, ...] = DEFAULT_DATETIME_TAGS

    @model_validator(mode="after")
    def _pattern_fits_source(self) -> DatetimeRule:
        if self.source == "filename":
            if not self.pattern:
                raise ValueError("a filename rule needs a 'pattern'")
            groups = set(re.compile(self.pattern).groupindex)
            usable = (
                "datetime" in groups
                or {"start_datetime", "end_datetime"} <= groups
                or ("year" in groups and ("day" not in groups or bool(groups & {"month", "doy"})))
            )
            if not usable:
                raise ValueError(
                    "pattern needs a named group 'datetime', or 'start_datetime' and "
                    "'end_datetime', or date parts 'year' (with 'month'+'day', 'doy', "
                    "'month' for a whole month, or alone for a whole year)"
                )
        elif self.pattern is not None:
            raise ValueError(f"'pattern' only applies to filename rules, not {self.source!r}")
        return self


def _default_datetime_rules() -> tuple[DatetimeRule, ...]:
    return (
        *(DatetimeRule(source="filename", pattern=p) for p in DEFAULT_FILENAME_PATTERNS),
        DatetimeRule(source="gdal"),
    )


class Provider(_Model):
    name: str
    roles: tuple[Literal["licensor", "producer", "processor", "host"], ...] = ()
    url: str | None = None
    description: str | None = None


class CollectionSettings(_Model):
    """A collection's descriptive metadata and the per-collection Item properties."""

    id: str | None = None
    title: str | None = None
    description: str | None = None
    license: str = "other"
    keywords: tuple[str, ...] = ()
    providers: tuple[Provider, ...] = ()
    platform: str | None = None
    constellation: str | None = None
    instruments: tuple[str, ...] = ()
    gsd: float | None = Field(default=None, gt=0)
    partition: Literal["none", "year", "year/month", "year/month/day"] = "year/month"
    summaries: tuple[str, ...] | None = None

    @field_validator("id")
    @classmethod
    def _id_is_safe(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
            raise ValueError("collection id may use only A-Z a-z 0-9 _ - . and not start with '.'")
        return value

    @field_validator("platform", "constellation")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return searchable(value) if value else value

    @field_validator("instruments")
    @classmethod
    def _lower_all(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(searchable(v) for v in value)


class ItemRules(_Model):
    """How a file (or group of files) becomes an Item.

    Configured ``datetime`` rules are tried first and the defaults after them, so a
    rule for one product's naming never loses the common date stamps; set
    ``replace_default_datetime_rules`` to try only the configured rules.
    """

    id_template: str = "{stem}"
    datetime: tuple[DatetimeRule, ...] = Field(default_factory=_default_datetime_rules)
    replace_default_datetime_rules: bool = False
    unlocated: Literal["reject", "null-geometry"] = "reject"
    precision: int = Field(default=7, ge=0, le=12)
    densify: int = Field(default=21, ge=2, le=1000)
    statistics: Literal["off", "approx", "exact"] = "off"
    checksum: bool = False
    thumbnail: bool = False
    legacy_fields: bool = True
    asset_href_base: str | None = None
    group_pattern: Regex | None = None
    sidecars: tuple[str, ...] = DEFAULT_SIDECARS

    @model_validator(mode="after")
    def _defaults_follow_configured_rules(self) -> ItemRules:
        if self.replace_default_datetime_rules:
            if not self.datetime:
                raise ValueError("replace_default_datetime_rules = true needs at least one [[watch.items.datetime]] rule")
            return self
        extra = tuple(rule for rule in _default_datetime_rules() if rule not in self.datetime)
        if extra:
            object.__setattr__(self, "datetime", self.datetime + extra)
        return self

    @field_validator("group_pattern")
    @classmethod
    def _group_has_item(cls, value: str | None) -> str | None:
        if value is not None and "item" not in re.compile(value).groupindex:
            raise ValueError("group_pattern needs a named group 'item' (and optionally 'asset')")
        return value

    @field_validator("id_template")
    @classmethod
    def _template_formats(cls, value: str) -> str:
        try:
            value.format_map(_AnyKey())
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        return value


class _AnyKey(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"


class WatchSettings(_Model):
    """One watched folder and the rules for what lands in it."""

    path: Path
    collection: CollectionSettings = CollectionSettings()
    items: ItemRules = ItemRules()
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    recursive: bool = True
    on_delete: Literal["remove", "keep"] = "remove"
    #: With ``[object_store] assets = "upload"``: publish files that are symlinks to
    #: places outside this folder (refused by default, so nothing leaves by accident).
    follow_symlinks: bool = False

    @property
    def collection_id(self) -> str:
        """The configured id, else one derived from the folder name."""
        return self.collection.id or collection_id_for(self.path)


def collection_id_for(folder: Path) -> str:
    """A safe collection id from a folder name (``/data/My Scenes`` → ``My_Scenes``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.resolve().name or "collection")
    return re.sub(r"^\.+", "_", name) or "collection"


class CatalogSettings(_Model):
    root: Path = Path("catalog")
    id: str = "stacwatchd"
    title: str | None = None
    description: str = "Rasters cataloged by stacwatchd"
    self_href: str | None = None
    state_file: Path | None = None
    file_mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3}$", description="e.g. '0644'; default: from the umask")
    dir_mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3}$", description="e.g. '0755'; default: from the umask")

    @property
    def state_path(self) -> Path:
        """Where the state index lives: hidden under the root unless configured."""
        return self.state_file or self.root / STATE_DIRNAME / "state.db"


def _listen_address(value: str | None) -> str | None:
    if value is not None:
        listen_address(value)
    return value


def listen_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9108`` for IPv6) as a (host, port) pair; ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('expected "host:port", e.g. "127.0.0.1:9108" (port 0 picks a free one)')
    return host, int(port)


class MetricsSettings(_Model):
    """The Prometheus endpoint (``/metrics`` and ``/healthz``); off unless ``listen`` is set."""

    listen: Annotated[str | None, AfterValidator(_listen_address)] = None


class LogSettings(_Model):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class PgstacSettings(_Model):
    dsn: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    batch_size: int = Field(default=500, ge=1, le=50_000)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=3.0, ge=2)  # libpq rounds anything lower up to 2 s
    public_base_url: str | None = None
    canonical_links: bool = True

    @model_validator(mode="after")
    def _no_secret_in_the_file(self) -> PgstacSettings:
        if self.dsn is not None:
            dsn = self.dsn.get_secret_value()
            in_url = "://" in dsn and urlsplit(dsn).password
            if in_url or re.search(r"\bpassword\s*=", dsn):
                raise ValueError("the dsn must not contain the password: use password_env or password_file")
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        return self


#: Keys that would put credentials into the configuration file; they come from the
#: standard chains (environment, instance and web-identity roles) instead.
_CREDENTIAL_KEYS = frozenset({
    "access_key_id", "secret_access_key", "session_token", "token", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "account_key", "sas_key", "client_secret",
    "service_account_key", "password", "credentials",
})  # fmt: skip


class ObjectStoreSettings(_Model):
    """A mirror of the static catalog in object storage (S3 and compatibles, GCS, Azure).

    Credentials never appear here: obstore reads them from the standard chains
    (``AWS_ACCESS_KEY_ID``…, container and instance roles, web identity tokens,
    ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_…``).
    """

    url: str = Field(description="s3://bucket/prefix/, gs://bucket/prefix/, az://container/prefix/ or file:///path/")
    endpoint: str | None = None
    region: str | None = None
    cache_control_catalogs: str = "max-age=60"
    cache_control_items: str = "max-age=3600"
    assets: Literal["reference", "upload"] = "reference"
    public_base_url: str | None = None
    concurrency: int = Field(default=16, ge=1, le=256)
    batch_size: int = Field(default=500, ge=1, le=50_000)
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(k for k in data if str(k).lower() in _CREDENTIAL_KEYS)
            if found:
                raise ValueError(
                    f"{', '.join(found)}: credentials never go into the configuration; they come from "
                    "the environment (AWS_ACCESS_KEY_ID…, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_…) "
                    "or the instance's role"
                )
        return data

    @model_validator(mode="after")
    def _retry_range(self) -> ObjectStoreSettings:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        return self

    @field_validator("url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "file", "memory"):
            raise ValueError("expected s3://bucket/prefix/, gs://…, az://… or file:///…")
        if parts.scheme not in ("file", "memory") and not parts.netloc:
            raise ValueError("the URL names no bucket")
        if parts.username or parts.password or parts.query:
            raise ValueError("the URL must not carry credentials or parameters")
        if ".." in parts.path.split("/"):
            raise ValueError("the prefix must not contain '..'")
        return value

    @field_validator("endpoint", "public_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("the URL must not carry credentials")
        return value


#: Every change event a notification target can receive (the default: all of them).
NOTIFY_EVENTS: tuple[str, ...] = (
    "item.added",
    "item.updated",
    "item.removed",
    "collection.created",
    "collection.changed",
    "collection.removed",
)
NotifyEvent = Literal[
    "item.added", "item.updated", "item.removed", "collection.created", "collection.changed", "collection.removed"
]
_SINK_NAME = r"^[A-Za-z0-9_.:/@-]{1,120}$"


class NotifyTarget(_Model):
    """What every notification target shares: which changes it wants, and retries."""

    name: str | None = Field(default=None, pattern=_SINK_NAME, description="keeps its cursor when targets are reordered")
    events: tuple[NotifyEvent, ...] = NOTIFY_EVENTS
    collections: tuple[str, ...] = ()  # empty: every collection
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    #: A message the target refuses for good (a webhook's 4xx other than 408 and 429, an
    #: SNS invalid parameter) this many times in a row is dropped, logged and counted.
    max_attempts: int = Field(default=5, ge=1, le=1000)

    @model_validator(mode="after")
    def _retry_range(self) -> NotifyTarget:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        if not self.events:
            raise ValueError("events must name at least one event (leave it out for all)")
        return self


class WebhookSettings(NotifyTarget):
    """One HTTP(S) endpoint that receives a signed ``POST`` per change."""

    url: str
    secret_env: str | None = None
    secret_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.password:
            raise ValueError("the url must not contain a password: use secret_env or secret_file")
        return value

    @field_serializer("url", when_used="json")
    def _masked_url(self, value: str) -> str:
        """Shown (``config check``) without its path and query: either may hold a token."""
        parts = urlsplit(value)
        hidden = (parts.path not in ("", "/")) or parts.query
        return f"{parts.scheme}://{parts.netloc}" + ("/***" if hidden else parts.path)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSettings:
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("set secret_env or secret_file (exactly one): every message is signed")
        return self


class SnsSettings(NotifyTarget):
    """One SNS topic (or a compatible service) that receives a message per change."""

    topic_arn: str = Field(pattern=r"^arn:[a-z-]+:sns:[a-z0-9-]*:[0-9]*:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
    region: str | None = None  # default: the ARN's
    endpoint: str | None = None  # e.g. a local test server; default: AWS

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL")
            if parts.password:
                raise ValueError("the endpoint must not contain credentials: use the AWS credential chain")
        return value

    @property
    def topic_region(self) -> str | None:
        return self.region or self.topic_arn.split(":")[3] or None


class NotifySettings(_Model):
    """Change notifications: each target is its own sink with its own cursor."""

    #: Where the catalog root is published; Item hrefs in messages are made absolute under it.
    public_base_url: str | None = None
    webhook: tuple[WebhookSettings, ...] = ()
    sns: tuple[SnsSettings, ...] = ()

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not urlsplit(value).scheme:
            raise ValueError("must be an absolute URL (https://example.org/stac/)")
        return value

    def target_names(self) -> list[str]:
        """Sink names in configuration order: ``webhook:<host>/<n>``, ``sns:<topic>``."""
        names: list[str] = []
        per_host: dict[str, int] = {}
        for hook in self.webhook:
            netloc = urlsplit(hook.url).netloc.rpartition("@")[2]
            per_host[netloc] = per_host.get(netloc, 0) + 1
            names.append(hook.name or f"webhook:{netloc}/{per_host[netloc]}")
        names += [topic.name or f"sns:{topic.topic_arn.rsplit(':', 1)[1]}" for topic in self.sns]
        return names

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        names = self.target_names()
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two targets are named {', '.join(twice)}: give one a 'name'")
        return self


class Settings(BaseSettings):
    """The whole configuration of one stacwatchd instance."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    catalog: CatalogSettings = CatalogSettings()
    watch: tuple[WatchSettings, ...] = ()
    workers: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=256)
    settle_seconds: float = Field(default=2.0, ge=0)
    reconcile_interval: float = Field(default=600.0, ge=0)
    item_timeout_seconds: float = Field(default=120.0, gt=0)
    queue_size: int = Field(default=10_000, ge=1)
    stall_warning_seconds: float = Field(default=60.0, gt=0)
    scrub_full_every: int = Field(default=6, ge=0)
    observer: Literal["auto", "inotify", "polling"] = "auto"
    log: LogSettings = LogSettings()
    pgstac: PgstacSettings | None = None
    metrics: MetricsSettings = MetricsSettings()
    object_store: ObjectStoreSettings | None = None
    notify: NotifySettings = NotifySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the file, explicit arguments beat both."""
        toml_path = _TOML_PATH.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    def watch_for(self, path: Path) -> WatchSettings | None:
        """The watch whose folder holds ``path`` (deepest folder wins)."""
        path = path.resolve()
        best: WatchSettings | None = None
        for watch in self.watch:
            folder = watch.path.resolve()
            if path.is_relative_to(folder) and (best is None or len(folder.parts) > len(best.path.resolve().parts)):
                best = watch
        return best


_TOML_PATH: ContextVar[Path | None] = ContextVar("stacwatchd_toml_path", default=None)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration, raising ConfigError that names the key and its source.

    A problem set by a ``STACWATCHD_*`` variable names the variable, not the file.
    """
    if path is not None:
        if not path.is_file():
            raise ConfigError(path, "configuration file not found")
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, f"not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    token = _TOML_PATH.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        env = _environment_keys()
        blamed_on_file = any(_variable_for(err["loc"], env) is None for err in exc.errors())
        source = path if blamed_on_file else None
        raise ConfigError(source, describe_validation_error(exc, env)) from None
    finally:
        _TOML_PATH.reset(token)


def require_watches(settings: Settings, path: Path | None) -> None:
    """``run`` needs something to watch; ``config check`` refuses the same configuration."""
    if not settings.watch:
        raise ConfigError(path or Path("<environment>"), "no [[watch]] folders configured")


def missing_watch_folders(settings: Settings) -> list[Path]:
    """Watched folders that do not exist now (``run`` waits for them; a typo waits forever)."""
    return [watch.path for watch in settings.watch if not watch.path.is_dir()]


def masked_dsn(dsn: str) -> str:
    """The DSN as written, with only a password (if any slipped in) replaced by ``***``."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    return re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def display_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-ready data for ``config check``: secrets masked, nothing else."""
    data = settings.model_dump(mode="json")
    if settings.pgstac is not None and settings.pgstac.dsn is not None:
        data["pgstac"]["dsn"] = masked_dsn(settings.pgstac.dsn.get_secret_value())
    return data


def _environment_keys() -> dict[str, str]:
    """``STACWATCHD_*`` variables set now, upper-cased name → name as set."""
    return {name.upper(): name for name in os.environ if name.upper().startswith(ENV_PREFIX)}


def _variable_for(loc: tuple[int | str, ...], env: dict[str, str]) -> str | None:
    """The environment variable that set the value at ``loc``, or None when the file did."""
    keys = [str(part).upper() for part in loc if not isinstance(part, int)]
    for depth in range(len(keys), 0, -1):
        name = ENV_PREFIX + "__".join(keys[:depth])
        if name in env:
            return env[name]
    prefix = ENV_PREFIX + "__".join(keys) + "__"
    return next((env[name] for name in sorted(env) if keys and name.startswith(prefix)), None)


def _toml_key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if not isinstance(part, int))


def _hint(err: Any) -> str:
    """A pointer to the usual TOML slip behind an error: a table where an array of tables goes."""
    key = _toml_key(err["loc"])
    if err["type"] in ("tuple_type", "list_type") and isinstance(err.get("input"), dict):
        return f" (write [[{key}]], an array of tables, not [{key}])"
    if err["type"] in ("model_type", "dict_type", "model_attributes_type") and isinstance(err.get("input"), list):
        return f" (write [{key}], a table, not [[{key}]])"
    return ""


def describe_validation_error(exc: ValidationError, env: dict[str, str] | None = None) -> str:
    """One line per problem, each naming the dotted key as users write it in TOML,
    and the environment variable when one set it."""
    env = {} if env is None else env
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        variable = _variable_for(err["loc"], env)
        where = f"environment variable {variable} ({key})" if variable else key
        lines.append(f"{where}: {message}{_hint(err)}")
    return "; ".join(lines)
