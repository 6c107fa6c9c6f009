"""Every href stacwatchd writes is a percent-encoded URI reference that resolves to its file.

File names may hold any character a file system allows; in an href ``#`` starts a
fragment, ``?`` a query and ``%`` an escape. Each hostile name below is cataloged with the
real CLI, and its hrefs are resolved the way a URL client does: decoded relative to the
Item JSON. A newline is a legal character in a file name and is encoded like the others.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import pytest
from conftest import schema_option

from stacwatchd import testing
from stacwatchd.config import ItemRules
from stacwatchd.model.items import BuiltItem, Rules, build, item_to_dict
from stacwatchd.stac.layout import href_to_path, path_to_href, relative_href

HOSTILE = {
    "space": "two words",
    "hash": "take#2",
    "question": "why?",
    "percent": "100%",
    "escaped_space": "looks%20escaped",
    "plus": "a+b",
    "ampersand": "this&that",
    "colon": "12:30",
    "apostrophe": "it's",
    "double_quote": 'say "cheese"',
    "unicode_nfc": unicodedata.normalize("NFC", "café Zürich"),
    "unicode_nfd": unicodedata.normalize("NFD", "café Zürich"),
    "newline": "first\nsecond",
}
FOLDER = "in #1 ?100% done"

# RFC 3986: unreserved, reserved and percent-encoded triplets, nothing else.
URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


def file_name(key: str) -> str:
    return f"{key}_{HOSTILE[key]}_20240517.tif"


def is_uri_reference(href: str) -> bool:
    return bool(URI_REFERENCE.match(href))


def decoded_path(href: str) -> str:
    """What a URL client opens: the path of the URL, percent-decoded to bytes."""
    return os.fsdecode(unquote_to_bytes(urlsplit(href).path))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    folder = data / FOLDER
    files = {key: testing.utm(folder / file_name(key)) for key in HOSTILE}
    assert (folder / file_name("unicode_nfc")) != (folder / file_name("unicode_nfd"))
    return data, files


def items_by_title(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    found = {}
    for path in root.rglob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("type") == "Feature":
            found[doc["assets"]["data"]["title"]] = (path, doc)
    return found


def test_hostile_names_round_trip_through_the_static_catalog(hostile_files, tmp_path):
    data, files = hostile_files
    root = tmp_path / "catalog"

    scanned = cli("scan", str(data), "--catalog", str(root))
    assert scanned.returncode == 0, scanned.stderr
    assert f"added {len(HOSTILE)}," in scanned.stdout

    items = items_by_title(root)
    assert set(items) == {path.name for path in files.values()}
    for key, source in files.items():
        item_path, item = items[source.name]
        via = [link["href"] for link in item["links"] if link["rel"] == "via"]
        for href in [item["assets"]["data"]["href"], *via]:
            assert is_uri_reference(href), (key, href)
            assert not href.startswith("/")
            resolved = decoded_path(urljoin(item_path.as_uri(), href))
            assert os.path.samefile(resolved, source), (key, href)

    validated = cli("validate", str(root), "--check-assets", *schema_option())
    assert validated.returncode == 0, validated.stdout + validated.stderr
    status = cli("status", "--catalog", str(root), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["items"] == len(HOSTILE)


def test_validate_reports_an_href_that_only_resolves_without_decoding(hostile_files, tmp_path):
    data, files = hostile_files
    root = tmp_path / "catalog"
    assert cli("scan", str(data), "--catalog", str(root)).returncode == 0
    item_path, item = items_by_title(root)[files["hash"].name]
    literal = os.path.relpath(files["hash"], item_path.parent)
    item["assets"]["data"]["href"] = literal  # "…/take#2_…": a URL client reads "#2_…" as a fragment
    item_path.write_text(json.dumps(item))

    validated = cli("validate", str(root), "--check-assets", *schema_option())
    assert validated.returncode != 0
    assert "asset file not found" in validated.stdout + validated.stderr


def test_asset_href_base_urls_encode_folders_and_names(hostile_files):
    data, files = hostile_files
    rules = Rules(collection_id="c", root=data, items=ItemRules(asset_href_base="https://data.example.test/rasters/"))
    for key, source in files.items():
        result = build(source, rules)
        assert isinstance(result, BuiltItem), result
        href = item_to_dict(result.item)["assets"]["data"]["href"]
        assert is_uri_reference(href), (key, href)
        assert decoded_path(href) == "/rasters/" + source.relative_to(data).as_posix()


@pytest.mark.parametrize("key", list(HOSTILE))
def test_path_to_href_and_back_is_the_same_path(key):
    path = f"../../{FOLDER}/{file_name(key)}"
    href = path_to_href(path)
    assert is_uri_reference(href)
    assert href_to_path(href) == path


def test_names_that_are_one_character_apart_in_encoding_stay_apart():
    assert path_to_href("./a b.tif") != path_to_href("./a%20b.tif")
    assert href_to_path(path_to_href("./a%20b.tif")) == "./a%20b.tif"
    nfc, nfd = (unicodedata.normalize(form, "é.tif") for form in ("NFC", "NFD"))
    assert path_to_href(nfc) == "%C3%A9.tif" and path_to_href(nfd) == "e%CC%81.tif"


@pytest.mark.pg
@pytest.mark.parametrize("base_url", [None, "https://data.example.test/stac"], ids=["file", "https"])
def test_hostile_names_are_valid_urls_in_pgstac(hostile_files, tmp_path, pgstac_db, monkeypatch, base_url):
    from pydantic import SecretStr

    from stacwatchd.config import CatalogSettings, CollectionSettings, PgstacSettings
    from stacwatchd.engine.writer import op_for, open_writer
    from stacwatchd.sinks.base import SinkRunner
    from stacwatchd.sinks.pgstac import PgstacSink

    data, files = hostile_files
    catalog = CatalogSettings(root=tmp_path / "catalog")
    collection = CollectionSettings(id="hostile")
    rules = Rules(collection_id="hostile", root=data, collection=collection)
    monkeypatch.setenv("STACWATCHD_TEST_HREFS_PASSWORD", pgstac_db.password)
    settings = PgstacSettings(
        dsn=SecretStr(f"postgresql://{pgstac_db.user}@{pgstac_db.host}:{pgstac_db.port}/{pgstac_db.dbname}"),
        password_env="STACWATCHD_TEST_HREFS_PASSWORD",
        public_base_url=base_url,
    )
    sink = PgstacSink(settings, catalog, collections={"hostile": collection})
    writer = open_writer(catalog, {"hostile": collection}, [sink], durability="none")
    publisher = SinkRunner(sink, writer.state.path)
    try:
        result = writer.apply([op_for(build(path, rules), rules) for path in files.values()])
        assert not result.rejections, result.rejections
        publisher.drain()
        with pgstac_db.connect() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.items").fetchall()]
            published = [conn.execute("SELECT pgstac.get_item(%s, 'hostile')", (i,)).fetchone()[0] for i in ids]
    finally:
        publisher.stop()
        writer.close()

    assert len(published) == len(HOSTILE)
    for item in published:
        source = next(path for path in files.values() if path.name == item["assets"]["data"]["title"])
        via = [link["href"] for link in item["links"] if link["rel"] == "via"]
        for href in [item["assets"]["data"]["href"], *via]:
            assert is_uri_reference(href), href
            parts = urlsplit(href)
            if base_url is None:
                assert parts.scheme == "file"
                assert os.path.samefile(href_to_path(href), source), href
            else:
                assert (parts.scheme, parts.netloc) == ("https", "data.example.test")
                assert decoded_path(href).endswith("/" + source.relative_to(data.parent).as_posix()), href


_PATHS = [
    "/",
    "/catalog.json",
    "/srv/stac/catalog.json",
    "/srv/stac/scenes/collection.json",
    "/srv/stac/scenes/2024/01/catalog.json",
    "/srv/stac/scenes/2024/01/a_20240101/a_20240101.json",
    "/srv/stacked/x.json",
    "/srv/data/.hidden/a b#1.tif",
    "/srv//data/a.tif",
    "/srv/./data/a.tif",
    "/srv/data/../stac/a.tif",
    "/srv/data/",
]


@pytest.mark.parametrize("from_file", _PATHS[1:])
def test_relative_hrefs_match_relpath_for_every_pair_of_paths(from_file: str):
    """The layout's own relative paths take a short way; any path, normal or not, must
    give what ``os.path.relpath`` gives."""
    for target in _PATHS:
        rel = os.path.relpath(target, os.path.dirname(Path(from_file)))
        expected = path_to_href(rel if rel.startswith("../") else f"./{rel}")
        assert relative_href(target, Path(from_file)) == expected, (target, from_file)
