"""Validation of STAC objects and of whole static catalogs against the official schemas.

The daemon rewrites a catalog continuously, so a validator has to answer two
questions cheaply: does every JSON document satisfy the published STAC JSON
Schemas (core and every declared extension), and does the tree of files hang
together (links resolve, every Item is listed exactly once, no temp files were
left behind by an interrupted write)?  Schemas are resolved offline from a URL
mirror, the STAC core schemas bundled with pystac, a cache, or - only when
allowed - the network, and a schema that cannot be obtained is always reported,
never silently skipped.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urldefrag, urljoin, urlsplit

import referencing.exceptions
from jsonschema import FormatChecker, ValidationError
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import Draft7Validator, validator_for
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from stacwatchd.errors import StacwatchdError
from stacwatchd.stac.layout import href_to_path
from stacwatchd.stac.names import CATALOG_FILE, STRUCTURAL_RELS

try:
    import jsonschema_rs as _jsonschema_rs
except ImportError:  # optional accelerator
    _jsonschema_rs = None

__all__ = [
    "CatalogNotFoundError",
    "CatalogReport",
    "CompiledSchema",
    "InvalidJSONError",
    "NotStacObjectError",
    "Problem",
    "SchemaStore",
    "SchemaUnavailableError",
    "ValidateError",
    "ValidationReport",
    "bundled_schemas",
    "core_schema_url",
    "load_json",
    "mirror_path",
    "validate_catalog",
    "validate_object",
]

STAC_SCHEMA_HOST = "https://schemas.stacspec.org"
ROOT_CATALOG_NAME = CATALOG_FILE
TEMP_FILE_PATTERN = ".*.tmp*"

_CORE_SCHEMA_NAMES = {"Feature": "item", "Catalog": "catalog", "Collection": "collection"}
_CONTAINER_TYPES = frozenset({"Catalog", "Collection"})
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(?P<sec>\d{2})(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
_T = TypeVar("_T")
_MAX_MESSAGE = 300
_MAX_SCHEMA_BYTES = 8 * 1024 * 1024
_LOOKUP_ERRORS = (
    referencing.exceptions.Unresolvable,
    referencing.exceptions.Unretrievable,
    referencing.exceptions.NoSuchResource,
    referencing.exceptions.CannotDetermineSpecification,
)


# --------------------------------------------------------------------------- errors


class ValidateError(StacwatchdError):
    """Base class for failures of the validator itself (as opposed to invalid data)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class SchemaUnavailableError(ValidateError):
    """A schema URL could not be obtained from the mirror, the cache or the network."""

    def __init__(self, url: str, reason: str, path: Path | None = None) -> None:
        super().__init__(f"schema unavailable: {url} ({reason})")
        self.url = url
        self.reason = reason
        self.path = path


class CatalogNotFoundError(ValidateError, FileNotFoundError):
    """The path given as catalog root holds no catalog.json."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no STAC root catalog at {path}")
        self.path = path


class NotStacObjectError(ValidateError, ValueError):
    """An object whose ``type`` or ``stac_version`` cannot select a core STAC schema."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer}: {reason}")
        self.pointer = pointer
        self.reason = reason


class InvalidJSONError(ValidateError, ValueError):
    """A file is not strict JSON: bad UTF-8, a syntax error, or a NaN/Infinity literal."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, located precisely enough to fix it without re-running anything.

    ``pointer`` is an RFC 6901 JSON pointer into the object ("" is the whole
    object); ``schema`` is the schema URL that rejected it, or None for
    findings about files and links.
    """

    path: Path | None
    schema: str | None
    pointer: str
    message: str

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<object>"
        text = f"{where}: [{self.pointer or '/'}] {self.message}"
        return f"{text} ({self.schema})" if self.schema else text


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Outcome of checking one object: schema problems, and schemas left unchecked.

    Iterating or taking ``len`` gives the problems, so callers that only care
    about failures can treat it like a list of problems.
    """

    problems: tuple[Problem, ...] = ()
    unchecked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed; unchecked schemas are listed separately."""
        return not self.problems

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)


@dataclass(slots=True)
class CatalogReport:
    """Outcome of checking a whole catalog tree, with counts for a summary line."""

    root: Path
    catalogs: int = 0
    collections: int = 0
    items: int = 0
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (schemas in ``unchecked`` were not verified)."""
        return not self.problems


# --------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    """Refuse NaN/Infinity: Python accepts them, but they are not JSON and break other readers."""
    raise ValueError(f"{name} literal (not allowed in JSON)")


def load_json(path: Path) -> Any:
    """Parse a file as strict JSON (UTF-8, no NaN/Infinity), as other STAC tools will."""
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InvalidJSONError(path, f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except ValueError as exc:
        raise InvalidJSONError(path, f"invalid JSON: {exc}") from exc


# --------------------------------------------------------------------------- schemas


def _check_date_time(value: object) -> bool:
    """RFC 3339 date-time, which STAC requires for every datetime field."""
    if not isinstance(value, str):
        return True
    match = _RFC3339_RE.match(value)
    if match is None:
        return False
    text = value.upper()
    if match["sec"] == "60":
        text = text[: match.start("sec")] + "59" + text[match.end("sec") :]
    try:
        _dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _format_checker() -> FormatChecker:
    """Only date-time is asserted: it needs no extra dependency and STAC relies on it."""
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_check_date_time)
    return checker


_FORMAT_CHECKER = _format_checker()


def _normalize_url(url: str) -> str:
    """Schema identity ignores the fragment (ids such as ``.../schema.json#``)."""
    return urldefrag(url).url


def mirror_path(base: Path, url: str) -> Path | None:
    """Map an http(s) URL to ``base/<host>/<path>``, or None if it cannot be mapped safely."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        return None
    segments = parts.path.split("/")[1:]
    if not segments or any(s in ("", ".", "..") for s in segments):
        return None
    return base.joinpath(parts.netloc.lower(), *segments)


def _iter_refs(node: object) -> Iterator[str]:
    """Every ``$ref`` string in a schema document, to prefetch what it depends on."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str):
                yield ref
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


@lru_cache(maxsize=1)
def bundled_schemas() -> Mapping[str, dict[str, Any]]:
    """The STAC core and GeoJSON schemas shipped inside pystac's wheel, by URL.

    They make the core checks work on any machine, offline, with nothing to set up;
    extension schemas still need a mirror, the cache or the network.
    """
    try:
        from pystac.validation.local_validator import get_local_schema_cache
    except ImportError:  # an older pystac without the bundle
        return {}
    try:
        return {_normalize_url(url): schema for url, schema in get_local_schema_cache().items()}
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A schema ready to use: the authoritative validator plus an optional fast pre-check.

    ``fast`` (jsonschema-rs, when installed) only ever answers "valid"; any
    object it does not accept is re-checked by ``validator`` for the problems,
    so the fast path changes speed, never verdicts or messages.
    """

    url: str
    validator: Validator
    fast: Callable[[object], bool] | None = None

    def accepts_quickly(self, obj: object) -> bool:
        """True only when the fast validator exists and accepts ``obj``."""
        if self.fast is None:
            return False
        try:
            return self.fast(obj)
        except (ValueError, TypeError, OverflowError):
            return False


def _fast_validator(schema: dict[str, Any], retrieve: Callable[[str], Any]) -> Callable[[object], bool] | None:
    """Compile with jsonschema-rs if installed; None when absent or when it cannot compile."""
    if _jsonschema_rs is None:
        return None
    try:
        compiled = _jsonschema_rs.validator_for(schema, retriever=retrieve, validate_formats=True)
    except (ValueError, TypeError):
        return None
    return compiled.is_valid


class SchemaStore:
    """Resolves schema URLs offline first, and compiles each schema once.

    Lookup order: ``directory`` (a read-only URL mirror), then the core schemas
    bundled with pystac (unless ``bundled`` is False), then ``cache_dir`` (same
    layout as the mirror), then - only with ``allow_network`` - an HTTP fetch saved
    into ``cache_dir``.  Failures are remembered so a missing schema costs one
    lookup; ``origins`` and ``failures`` say where each schema came from or why not.
    With ``accelerate`` and jsonschema-rs installed, valid objects are accepted
    by a compiled Rust validator first (about a hundred times faster).
    """

    def __init__(
        self,
        directory: Path | None = None,
        cache_dir: Path | None = None,
        allow_network: bool = False,
        *,
        timeout: float = 10.0,
        accelerate: bool = True,
        bundled: bool = True,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.allow_network = allow_network
        self.timeout = timeout
        self.accelerate = accelerate
        self.bundled = bundled
        self._origins: dict[str, str] = {}
        self._contents: dict[str, dict[str, Any] | SchemaUnavailableError] = {}
        self._compiled: dict[str, CompiledSchema | SchemaUnavailableError] = {}
        self._registry: Registry[Any] = METASCHEMAS.combine(Registry(retrieve=self._retrieve))
        self._lock = threading.RLock()

    def contents(self, url: str) -> dict[str, Any]:
        """The JSON of the schema at ``url``; raises SchemaUnavailableError."""
        return self._memoized(self._contents, url, self._load)

    def compiled(self, url: str) -> CompiledSchema:
        """The schema at ``url`` compiled once, references prefetched; raises SchemaUnavailableError."""
        return self._memoized(self._compiled, url, self._compile)

    def _memoized(
        self,
        cache: dict[str, _T | SchemaUnavailableError],
        url: str,
        make: Callable[[str], _T | SchemaUnavailableError],
    ) -> _T:
        """Successes and failures alike are remembered, so each URL costs one lookup."""
        key = _normalize_url(url)
        with self._lock:
            cached = cache.get(key)
            if cached is None:
                cached = cache[key] = make(key)
        if isinstance(cached, SchemaUnavailableError):
            raise cached
        return cached

    def validator(self, url: str) -> Validator:
        """The (cached) jsonschema validator for ``url``; raises SchemaUnavailableError."""
        return self.compiled(url).validator

    @property
    def origins(self) -> dict[str, str]:
        """URL → where the schema was found: ``mirror``, ``bundled``, ``cache`` or ``network``."""
        with self._lock:
            return dict(self._origins)

    @property
    def failures(self) -> dict[str, SchemaUnavailableError]:
        """URL → why it could not be obtained, for every schema looked up in vain."""
        with self._lock:
            return {u: e for u, e in self._contents.items() if isinstance(e, SchemaUnavailableError)}

    @property
    def registry(self) -> Registry[Any]:
        """The referencing registry holding every schema resolved so far."""
        return self._registry

    def _compile(self, url: str) -> CompiledSchema | SchemaUnavailableError:
        try:
            schema = self.contents(url)
        except SchemaUnavailableError as exc:
            return exc
        cls = validator_for(schema, default=Draft7Validator)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            return SchemaUnavailableError(url, f"not a valid schema: {exc.message}")
        self._prefetch(url)
        validator = cls(schema, registry=self._registry, format_checker=_FORMAT_CHECKER)
        fast = _fast_validator(schema, self.contents) if self.accelerate else None
        return CompiledSchema(url, validator, fast)

    def _prefetch(self, url: str) -> None:
        """Load every schema reachable by ``$ref`` so validation never waits on a lookup."""
        registry = self._registry
        pending, seen = [url], set()
        while pending:
            uri = pending.pop()
            if uri in seen:
                continue
            seen.add(uri)
            try:
                retrieved = registry.get_or_retrieve(uri)
            except _LOOKUP_ERRORS:
                continue
            registry = retrieved.registry
            base = retrieved.value.id() or uri
            refs = _iter_refs(retrieved.value.contents)
            pending.extend(_normalize_url(urljoin(base, ref)) for ref in refs)
        self._registry = registry.crawl()

    def _retrieve(self, uri: str) -> Resource[Any]:
        """Retrieval hook for ``referencing``: every ``$ref`` goes through this store."""
        return Resource.from_contents(self.contents(uri), default_specification=DRAFT7)

    def _load(self, url: str) -> dict[str, Any] | SchemaUnavailableError:
        reasons: list[str] = []
        for origin in ("mirror", "bundled", "cache"):
            found = self._lookup(origin, url, reasons)
            if found is not None:
                return self._found(url, origin, found)
        if not self.allow_network:
            reasons.append("network disabled")
            return SchemaUnavailableError(url, "; ".join(reasons) or "no schema source configured")
        return self._found(url, "network", self._download(url))

    def _lookup(self, origin: str, url: str, reasons: list[str]) -> dict[str, Any] | SchemaUnavailableError | None:
        """One offline source; None (and a reason) when it does not hold ``url``."""
        if origin == "bundled":
            return bundled_schemas().get(url) if self.bundled else None
        base = self.directory if origin == "mirror" else self.cache_dir
        if base is None:
            return None
        path = mirror_path(base, url)
        if path is not None and path.is_file():
            return self._read_local(url, path)
        reasons.append(f"not in {base}")
        return None

    def _found(
        self, url: str, origin: str, loaded: dict[str, Any] | SchemaUnavailableError
    ) -> dict[str, Any] | SchemaUnavailableError:
        if not isinstance(loaded, SchemaUnavailableError):
            self._origins[url] = origin
        return loaded

    @staticmethod
    def _read_local(url: str, path: Path) -> dict[str, Any] | SchemaUnavailableError:
        try:
            data = load_json(path)
        except (OSError, InvalidJSONError) as exc:
            return SchemaUnavailableError(url, str(exc), path)
        if not isinstance(data, dict):
            return SchemaUnavailableError(url, "schema is not a JSON object", path)
        return data

    def _download(self, url: str) -> dict[str, Any] | SchemaUnavailableError:
        if urlsplit(url).scheme not in ("http", "https"):
            return SchemaUnavailableError(url, "only http(s) schemas can be fetched")
        request = urllib.request.Request(url, headers={"User-Agent": "stacwatchd-validate"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(_MAX_SCHEMA_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return SchemaUnavailableError(url, f"download failed: {exc}")
        if len(body) > _MAX_SCHEMA_BYTES:
            return SchemaUnavailableError(url, "download too large")
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except ValueError as exc:
            return SchemaUnavailableError(url, f"downloaded schema is not JSON: {exc}")
        if not isinstance(data, dict):
            return SchemaUnavailableError(url, "schema is not a JSON object")
        self._save_to_cache(url, body)
        return data

    def _save_to_cache(self, url: str, body: bytes) -> None:
        """Atomic write so a concurrent reader never sees half a schema; failure is not fatal."""
        if self.cache_dir is None:
            return
        target = mirror_path(self.cache_dir, url)
        if target is None:
            return
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(body)
            os.replace(temp, target)
        except OSError:
            temp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- objects


def _json_pointer(parts: Iterable[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _elide_instance(error: ValidationError) -> str:
    """Drop a long leading repr of the instance; the pointer already says where it is."""
    shown = repr(error.instance)
    if len(shown) > 60 and error.message.startswith(shown):
        return "value" + error.message[len(shown) :]
    return error.message


def _describe(error: ValidationError) -> str:
    """A readable single-line message, naming the failed alternatives of oneOf/anyOf."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        leaves = sorted({_one_line(_elide_instance(e)) for e in error.context if not e.context})
        detail = "; ".join(leaves[:3])
        summary = f"matches none of the {error.validator} alternatives"
        return _one_line(f"{summary}: {detail}" if detail else summary)
    if error.validator == "not" and error.validator_value in ({}, True):
        return "not allowed here"
    return _one_line(_elide_instance(error))


def _schema_problem(error: ValidationError, url: str, path: Path | None) -> Problem:
    best = best_match([error]) or error
    return Problem(path, url, _json_pointer(best.absolute_path), _describe(best))


def core_schema_url(obj: Mapping[str, Any]) -> str:
    """The core STAC schema URL for an object, from its ``type`` and ``stac_version``.

    Raises NotStacObjectError pointing at the field that cannot pick a schema.
    """
    kind = obj.get("type")
    name = _CORE_SCHEMA_NAMES.get(kind) if isinstance(kind, str) else None
    if name is None:
        raise NotStacObjectError("/type", f"not a STAC Item, Catalog or Collection (type {kind!r})")
    version = obj.get("stac_version")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise NotStacObjectError("/stac_version", f"missing or malformed stac_version {version!r}")
    return f"{STAC_SCHEMA_HOST}/v{version}/{name}-spec/json-schema/{name}.json"


def _extension_urls(obj: Mapping[str, Any]) -> list[str]:
    """Declared extension schema URLs; malformed entries are left to the core schema to report."""
    declared = obj.get("stac_extensions", [])
    if not isinstance(declared, list):
        return []
    return list(dict.fromkeys(u for u in declared if isinstance(u, str)))


def _unresolved_url(exc: BaseException, fallback: str) -> str:
    """The schema URL behind a failed ``$ref``, found along the exception chain."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, SchemaUnavailableError):
            return current.url
        current = current.__cause__
    return str(getattr(exc, "ref", fallback))


def _check_schema(obj: Mapping[str, Any], url: str, store: SchemaStore, path: Path | None) -> tuple[list[Problem], str | None]:
    """Problems from one schema, plus the URL that could not be obtained (if any)."""
    try:
        compiled = store.compiled(url)
    except SchemaUnavailableError:
        return [], url
    if compiled.accepts_quickly(obj):
        return [], None
    problems: list[Problem] = []
    try:
        for error in compiled.validator.iter_errors(obj):
            problems.append(_schema_problem(error, url, path))
    except _LOOKUP_ERRORS as exc:
        return problems, _unresolved_url(exc, url)
    return problems, None


def validate_object(
    obj: Mapping[str, Any],
    store: SchemaStore,
    *,
    strict: bool = True,
    path: Path | None = None,
) -> ValidationReport:
    """Check one STAC object against its core schema and every declared extension.

    A schema that cannot be obtained is a Problem in strict mode and is listed
    in ``unchecked`` otherwise, so a missing schema never reads as a pass.
    """
    if not isinstance(obj, Mapping):
        return ValidationReport((Problem(path, None, "", "not a JSON object"),))
    try:
        urls = [core_schema_url(obj), *_extension_urls(obj)]
    except NotStacObjectError as exc:
        return ValidationReport((Problem(path, None, exc.pointer, exc.reason),))
    problems: list[Problem] = []
    unchecked: list[str] = []
    for url in urls:
        found, missing = _check_schema(obj, url, store, path)
        problems.extend(dict.fromkeys(found))
        if missing is None:
            continue
        if strict:
            problems.append(Problem(path, url, "", f"schema unavailable: {missing}"))
        else:
            unchecked.append(missing)
    return ValidationReport(tuple(problems), tuple(dict.fromkeys(unchecked)))


# --------------------------------------------------------------------------- catalogs


@dataclass(slots=True)
class _Node:
    """What the link checks need to remember about one STAC file (kept small for 100k items)."""

    path: str
    kind: str
    stac_id: object
    collection_field: object
    children: list[tuple[str, str, int]] = field(default_factory=list)
    parent: tuple[str, int] | None = None
    collection_link: tuple[str, int] | None = None
    has_parent_link: bool = False


def _is_absolute_href(href: str) -> bool:
    return href.startswith("/") or _SCHEME_RE.match(href) is not None


def _is_temp_name(name: str) -> bool:
    """Names our atomic writer uses (``.<name>.<random>.tmp``) before ``os.replace``."""
    return fnmatch.fnmatchcase(name, TEMP_FILE_PATTERN)


class _CatalogChecker:
    """One pass over the files, then one breadth-first pass over the link graph."""

    def __init__(self, root_file: str, store: SchemaStore, strict: bool, check_assets: bool) -> None:
        self.root_file = root_file
        self.root_dir = os.path.dirname(root_file)
        self.root_prefix = os.path.join(self.root_dir, "")
        self.store = store
        self.strict = strict
        self.check_assets = check_assets
        self.report = CatalogReport(root=Path(root_file))
        self.json_files: list[str] = []
        self.known_files: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        self.non_stac: list[tuple[str, object]] = []
        self.json_asset_targets: set[str] = set()
        self.unchecked: dict[str, None] = {}

    def problem(self, path: str, pointer: str, message: str) -> None:
        self.report.problems.append(Problem(Path(path), None, pointer, message))

    def shown(self, path: str) -> str:
        """Paths inside messages are relative to the root: shorter, and stable across machines."""
        return os.path.relpath(path, self.root_dir)

    def run(self) -> CatalogReport:
        self.scan()
        for path in self.json_files:
            self.check_file(path)
        if self.root_file not in self.nodes or self.nodes[self.root_file].kind not in _CONTAINER_TYPES:
            self.problem(self.root_file, "/type", "root must be a STAC Catalog or Collection")
        else:
            self.walk_links()
        self.report_non_stac()
        self.report.unchecked = list(self.unchecked)
        self.report.problems.sort(key=lambda p: str(p.path))
        return self.report

    def scan(self) -> None:
        """List JSON and temp files, skipping hidden directories such as ``.stacwatchd/``."""
        for dirpath, dirnames, filenames in os.walk(self.root_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if _is_temp_name(name):
                    self.problem(full, "", "leftover temporary file from an interrupted write")
                elif name.endswith(".json"):
                    self.json_files.append(full)
        self.known_files = set(self.json_files)

    def check_file(self, path: str) -> None:
        try:
            data = load_json(Path(path))
        except InvalidJSONError as exc:
            self.problem(path, "", exc.reason)
            return
        except OSError as exc:
            self.problem(path, "", f"unreadable: {exc.strerror or exc}")
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in _CORE_SCHEMA_NAMES:
            self.non_stac.append((path, kind))
            return
        self.count(kind)
        result = validate_object(data, self.store, strict=self.strict, path=Path(path))
        self.report.problems.extend(result.problems)
        self.unchecked.update(dict.fromkeys(result.unchecked))
        node = _Node(path, kind, data.get("id"), data.get("collection"))
        self.nodes[path] = node
        self.read_links(node, data.get("links"))
        self.read_assets(path, data.get("assets"))

    def count(self, kind: str) -> None:
        if kind == "Feature":
            self.report.items += 1
        elif kind == "Collection":
            self.report.collections += 1
        else:
            self.report.catalogs += 1

    def read_links(self, node: _Node, links: object) -> None:
        if not isinstance(links, list):
            return
        for index, link in enumerate(links):
            if not isinstance(link, dict):
                continue
            rel, href = link.get("rel"), link.get("href")
            if rel in STRUCTURAL_RELS and isinstance(href, str):
                self.read_link(node, rel, href, index)

    def read_link(self, node: _Node, rel: str, href: str, index: int) -> None:
        pointer = f"/links/{index}/href"
        if rel == "parent":
            node.has_parent_link = True
        if _is_absolute_href(href):
            if not (rel == "self" and node.path == self.root_file):
                self.problem(node.path, pointer, f"absolute href in structural '{rel}' link: {href}")
            return
        target = self.resolve_link(node.path, href, pointer)
        if target is None:
            return
        if rel in ("child", "item"):
            node.children.append((rel, target, index))
        elif rel == "root" and target != self.root_file:
            self.problem(node.path, pointer, f"root link does not point at the root catalog: {href}")
        elif rel == "self" and target != node.path:
            self.problem(node.path, pointer, f"self link does not point at this file: {href}")
        elif rel == "parent":
            self.set_parent(node, target, index)
        elif rel == "collection":
            node.collection_link = (target, index)

    def set_parent(self, node: _Node, target: str, index: int) -> None:
        if node.parent is not None:
            self.problem(node.path, f"/links/{index}", "more than one parent link")
            return
        node.parent = (target, index)

    def resolve_link(self, source: str, href: str, pointer: str) -> str | None:
        """Target path of a relative link if it is an existing catalog file, else report it."""
        target = self.local_target(source, href)
        if not target.startswith(self.root_prefix):
            self.problem(source, pointer, f"link points outside the catalog root: {href}")
            return None
        if target not in self.known_files:
            self.problem(source, pointer, f"link target not found: {href}")
            return None
        return target

    @staticmethod
    def local_target(source: str, href: str) -> str:
        """A relative href is a URI reference: resolved after percent-decoding (RFC 3986)."""
        return os.path.normpath(os.path.join(os.path.dirname(source), href_to_path(href)))

    def read_assets(self, path: str, assets: object) -> None:
        if not isinstance(assets, dict):
            return
        for key, asset in assets.items():
            href = asset.get("href") if isinstance(asset, dict) else None
            if not isinstance(href, str):
                continue
            local = self.asset_path(path, href)
            if local is None:
                continue
            if local.endswith(".json"):
                self.json_asset_targets.add(local)
            if self.check_assets and not os.path.exists(local):
                pointer = f"/assets{_json_pointer([key])}/href"
                self.problem(path, pointer, f"asset file not found: {href}")

    def asset_path(self, source: str, href: str) -> str | None:
        """Local filesystem path of an asset href, or None for remote assets."""
        if href.startswith("file:"):
            return os.path.normpath(href_to_path(href))
        if _SCHEME_RE.match(href):
            return None
        return self.local_target(source, href)

    def walk_links(self) -> None:
        """Breadth-first from the root: reachability, duplicate listings, parents, collections."""
        reached = {self.root_file: 1}
        queue: deque[tuple[str, _Node | None]] = deque([(self.root_file, None)])
        while queue:
            path, owner = queue.popleft()
            node = self.nodes[path]
            context = node if node.kind == "Collection" else owner
            for rel, target, index in node.children:
                if self.follow(node, rel, target, index, reached):
                    queue.append((target, context))
            if node.kind == "Feature":
                self.check_item_collection(node, owner)
        for path, node in self.nodes.items():
            if path not in reached:
                label = "Item" if node.kind == "Feature" else node.kind
                self.problem(path, "", f"orphan {label}: not reachable from the root catalog")

    def follow(self, source: _Node, rel: str, target: str, index: int, reached: dict[str, int]) -> bool:
        """Record one child/item link; True when the target is reached for the first time."""
        child = self.nodes.get(target)
        if child is None:
            return False
        pointer = f"/links/{index}"
        if (rel == "item") != (child.kind == "Feature"):
            message = f"'{rel}' link points at a {child.kind}: {self.shown(target)}"
            self.problem(source.path, pointer, message)
        count = reached.get(target, 0) + 1
        reached[target] = count
        if count > 1:
            self.problem(target, "", f"linked more than once (again from {self.shown(source.path)})")
            return False
        self.check_parent(child, source)
        return True

    def check_parent(self, child: _Node, lister: _Node) -> None:
        if child.parent is None:
            if not child.has_parent_link:
                message = f"missing parent link (listed by {self.shown(lister.path)})"
                self.problem(child.path, "/links", message)
            return
        target, index = child.parent
        if target != lister.path:
            message = f"parent link points at {self.shown(target)}, but {self.shown(lister.path)} lists it"
            self.problem(child.path, f"/links/{index}/href", message)

    def check_item_collection(self, item: _Node, owner: _Node | None) -> None:
        """An Item's ``collection`` field and link must name the Collection it sits under."""
        if owner is None:
            if item.collection_link is not None:
                self.check_collection_field(item, self.nodes.get(item.collection_link[0]))
            return
        if item.collection_link is None:
            message = f"missing collection link (sits under {self.shown(owner.path)})"
            self.problem(item.path, "/links", message)
        elif item.collection_link[0] != owner.path:
            target, index = item.collection_link
            sits_under = self.shown(owner.path)
            message = f"collection link points at {self.shown(target)}, but the item sits under {sits_under}"
            self.problem(item.path, f"/links/{index}/href", message)
        self.check_collection_field(item, owner)

    def check_collection_field(self, item: _Node, collection: _Node | None) -> None:
        if collection is None or collection.kind != "Collection":
            return
        if item.collection_field != collection.stac_id:
            expected = f"{collection.stac_id!r} from {self.shown(collection.path)}"
            message = f"collection is {item.collection_field!r}, expected {expected}"
            self.problem(item.path, "/collection", message)

    def report_non_stac(self) -> None:
        """JSON files that are neither STAC nor an asset of some STAC object do not belong here."""
        for path, kind in self.non_stac:
            if path not in self.json_asset_targets:
                self.problem(path, "/type", f"not a STAC Item, Catalog or Collection (type {kind!r})")


def _root_file(root: Path) -> str:
    candidate = root / ROOT_CATALOG_NAME if root.is_dir() else root
    if not candidate.is_file():
        raise CatalogNotFoundError(root)
    return str(candidate.resolve())


def validate_catalog(
    root: Path,
    store: SchemaStore,
    *,
    strict: bool = True,
    check_assets: bool = False,
) -> CatalogReport:
    """Check every file and link of a static catalog in one pass.

    ``root`` is the directory holding catalog.json, or the catalog.json itself.
    Hidden directories (the daemon's ``.stacwatchd/`` state) are ignored.
    Raises CatalogNotFoundError when there is no root catalog file.
    """
    checker = _CatalogChecker(_root_file(Path(root)), store, strict, check_assets)
    return checker.run()
