"""The catalog mirrored into object storage: a real S3 API server (moto) on loopback, the
real daemon and the real command line, observed as a reader of the bucket would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_support import DaemonProcess
from s3_support import BUCKET, CREDENTIALS, S3Server, local_files

from stacwatchd import testing
from stacwatchd.testing import wait_until

PREFIX = "stac/v1/"
SETTLE = 0.4


@pytest.fixture
def s3(tmp_path: Path):
    server = S3Server(tmp_path / "s3").start()
    server.create_bucket()
    yield server
    server.close()


def store_section(s3: S3Server, **extra: object) -> str:
    keys: dict[str, object] = {
        "url": f"s3://{BUCKET}/{PREFIX}",
        "endpoint": s3.endpoint,
        "region": "us-east-1",
        "cache_control_catalogs": "max-age=60",
        "cache_control_items": "max-age=86400",
        "timeout_seconds": 5,
        **extra,
    }
    return "[object_store]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())


def store_daemon(base: Path, s3: S3Server, *, watch_extra: str = "", **extra: object) -> DaemonProcess:
    daemon = DaemonProcess(base, settle=SETTLE, extra=store_section(s3, **extra), watch_extra=watch_extra)
    daemon.env = dict(CREDENTIALS)
    return daemon


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args], capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, **CREDENTIALS, **(env or {})),
    )  # fmt: skip


def without_store(config: str) -> str:
    """The same configuration without its [object_store] section."""
    return re.sub(r"\[object_store\]\n(?:[^\[\n][^\n]*\n)*", "", config)


def bucket_equals_local(s3: S3Server, catalog: Path) -> bool:
    return s3.objects(prefix=PREFIX) == local_files(catalog)


def item_keys(keys: set[str]) -> set[str]:
    return {k for k in keys if k.endswith(".json") and not k.endswith(("catalog.json", "collection.json"))}


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    folder = tmp_path / "prepared"
    folder.mkdir()
    return folder


# -- the daemon keeps the bucket equal to the local catalog --------------------------------------


def test_dropped_files_are_in_the_bucket_byte_for_byte_within_settle_plus_two_seconds(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3, watch_extra="[watch.items]\nthumbnail = true\n")
    try:
        daemon.start()
        made = [testing.cog(prepared / f"drop{i}_2024051{i}T103000.tif") for i in range(3)]
        dropped = time.monotonic()
        for path in made:
            testing.write_then_rename(path, daemon.watched / path.name)
        wait_until(
            lambda: len(item_keys(s3.keys(prefix=PREFIX))) == 3 and bucket_equals_local(s3, daemon.catalog),
            timeout=SETTLE + 2, interval=0.1, message="bucket == local catalog",
        )  # fmt: skip
        took = time.monotonic() - dropped
        assert took <= SETTLE + 2
        client = s3.client()
        item = next(iter(item_keys(s3.keys(prefix=PREFIX))))
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + item)
        assert head["ContentType"] == "application/json" and head["CacheControl"] == "max-age=86400"
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + "catalog.json")
        assert head["ContentType"] == "application/json" and head["CacheControl"] == "max-age=60"
        head = client.head_object(Bucket=BUCKET, Key=PREFIX + "scenes/2024/05/catalog.json")
        assert head["CacheControl"] == "max-age=60"
        thumb = PREFIX + item.rsplit("/", 1)[0] + "/thumbnail.png"
        assert client.head_object(Bucket=BUCKET, Key=thumb)["ContentType"] == "image/png"
        assert not [k for k in s3.keys() if not k.startswith(PREFIX)], "nothing outside the prefix"
        assert not [k for k in s3.keys(prefix=PREFIX) if k.startswith(".stacwatchd")], "the state stays local"
    finally:
        daemon.close()


def test_deleted_file_leaves_the_bucket_and_an_overwritten_one_is_updated(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3)
    try:
        daemon.start()
        keep = testing.cog(prepared / "keep_20240517.tif")
        gone = testing.cog(prepared / "gone_20240601.tif")
        for path in (keep, gone):
            testing.write_then_rename(path, daemon.watched / path.name)
        wait_until(lambda: len(item_keys(s3.keys(prefix=PREFIX))) == 2, timeout=30, message="two Items in the bucket")
        (daemon.watched / gone.name).unlink()
        wait_until(
            lambda: item_keys(s3.keys(prefix=PREFIX)) == {"scenes/2024/05/keep_20240517/keep_20240517.json"}
            and bucket_equals_local(s3, daemon.catalog),
            timeout=SETTLE * 2 + 10, interval=0.1, message="deleted Item gone from the bucket",
        )  # fmt: skip
        assert not [k for k in s3.keys(prefix=PREFIX) if k.startswith("scenes/2024/06")], "its emptied partition too"
        before = json.loads(s3.objects(prefix=PREFIX)["scenes/2024/05/keep_20240517/keep_20240517.json"])
        testing.write_then_rename(testing.utm(prepared / "other.tif", width=300, height=200), daemon.watched / keep.name)

        def updated() -> bool:
            doc = json.loads(s3.objects(prefix=PREFIX)["scenes/2024/05/keep_20240517/keep_20240517.json"])
            return doc["properties"]["proj:shape"] == [200, 300] and bucket_equals_local(s3, daemon.catalog)

        wait_until(updated, timeout=30, interval=0.1, message="overwritten Item updated in the bucket")
        assert before["properties"]["proj:shape"] != [200, 300]
        assert daemon.stop() == 0
        assert bucket_equals_local(s3, daemon.catalog)
    finally:
        daemon.close()


def test_a_bucket_configured_for_an_existing_catalog_is_filled_before_changes_land(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3)
    for i in range(3):
        testing.cog(daemon.watched / f"old{i}_2023010{i + 1}.tif")
    plain = tmp_path / "plain.toml"
    plain.write_text(without_store(daemon.config.read_text()))
    assert run_cli("scan", "--config", str(plain)).returncode == 0, "cataloged before the bucket was configured"
    assert s3.keys(prefix=PREFIX) == set()
    try:
        daemon.start()
        testing.write_then_rename(testing.cog(prepared / "new_20240517.tif"), daemon.watched / "new_20240517.tif")
        wait_until(
            lambda: len(item_keys(s3.keys(prefix=PREFIX))) == 4 and bucket_equals_local(s3, daemon.catalog),
            timeout=30, interval=0.2, message="the whole catalog in the bucket",
        )  # fmt: skip
        assert daemon.events("object_store_seeded")
        assert max(s3.uploads(prefix=PREFIX).values()) <= 2, "seeded once, then only what changed"
    finally:
        daemon.close()


def test_files_committed_while_the_seeding_runs_are_uploaded_once(tmp_path, s3, monkeypatch):
    """The seeding mirrors the catalog as it is on disk, so it also uploads what the writer
    commits while it runs; those rows, delivered next, find their bytes in the bucket."""
    from stacwatchd.config import load_settings
    from stacwatchd.engine.writer import op_for, open_writer
    from stacwatchd.model.items import Rules, build
    from stacwatchd.sinks import configured_sinks

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    watched = tmp_path / "incoming"
    watched.mkdir()
    first, meanwhile = testing.cog(watched / "a_20240101.tif"), testing.cog(watched / "b_20240102.tif")
    settings = load_settings(scan_config(tmp_path, s3, watched))
    (sink,) = configured_sinks(settings)
    watch = settings.watch[0]
    rules = Rules.from_watch(watch)
    writer = open_writer(settings.catalog, {watch.collection_id: watch.collection}, [sink])
    try:
        writer.apply([op_for(build(first, rules), rules)])
        state = writer.state
        queued = state.stream_end("files")
        listing = sink.bucket.list_all
        committed = []

        def list_while_the_writer_commits():  # the seeding has noted where the stream ends
            if not committed:
                committed.append(writer.apply([op_for(build(meanwhile, rules), rules)]))
            return listing()

        monkeypatch.setattr(sink.bucket, "list_all", list_while_the_writer_commits)
        sink.deliver(state.file_changes_after(0, 1000, until=queued), state)
        assert committed and committed[0].added == 1
        during = state.file_changes_after(queued, 1000)
        assert "scenes/collection.json" in {row.path for row in during}, "rows queued meanwhile"
        sink.deliver(during, state)
        assert bucket_equals_local(s3, settings.catalog.root)
        uploads = s3.uploads(prefix=PREFIX)
        assert set(uploads) == set(local_files(settings.catalog.root)) and set(uploads.values()) == {1}, uploads
    finally:
        writer.close()


# -- assets = "upload" -------------------------------------------------------------------------


def test_uploaded_data_equals_its_source_and_leaves_after_its_item(tmp_path, s3, prepared):
    daemon = store_daemon(tmp_path, s3, assets="upload")
    try:
        daemon.start()
        raster = testing.cog(prepared / "scene_20240517.tif")
        sidecar = prepared / "scene_20240517.txt"
        sidecar.write_bytes(os.urandom(9 * 1024 * 1024))  # above the multipart part size
        shutil.copy(sidecar, daemon.watched / sidecar.name)
        testing.write_then_rename(raster, daemon.watched / raster.name)
        folder = "scenes/2024/05/scene_20240517/"

        def uploaded() -> dict[str, bytes] | None:
            objects = s3.objects(prefix=PREFIX)
            item = objects.get(folder + "scene_20240517.json")
            return objects if item and "metadata-txt" in json.loads(item)["assets"] else None

        objects = wait_until(uploaded, timeout=30, interval=0.2, message="Item with its data in the bucket")
        assert objects[folder + "scene_20240517.tif"] == raster.read_bytes()
        assert objects[folder + "scene_20240517.txt"] == sidecar.read_bytes()
        head = s3.client().head_object(Bucket=BUCKET, Key=PREFIX + folder + "scene_20240517.txt")
        assert head["ETag"].strip('"').endswith("-2"), "streamed in parts, not read whole"
        head = s3.client().head_object(Bucket=BUCKET, Key=PREFIX + folder + "scene_20240517.tif")
        assert head["ContentType"] == "image/tiff; application=geotiff; profile=cloud-optimized"
        bucket_item = json.loads(objects[folder + "scene_20240517.json"])
        local_item = json.loads((daemon.catalog / folder / "scene_20240517.json").read_bytes())
        assert bucket_item["assets"]["data"]["href"] == "./scene_20240517.tif"
        assert bucket_item["assets"]["metadata-txt"]["href"] == "./scene_20240517.txt"
        assert [link["href"] for link in bucket_item["links"] if link["rel"] == "via"] == ["./scene_20240517.tif"]
        for doc in (bucket_item, local_item):
            for asset in doc["assets"].values():
                asset.pop("href")
            doc["links"] = [link for link in doc["links"] if link["rel"] != "via"]
        assert bucket_item == local_item, "the bucket's Item differs from the local one only in its hrefs"

        # The catalogs linking the Item are uploaded after it: wait for them, then compare.
        def catalogs_uploaded() -> bool:
            bucket = s3.objects(prefix=PREFIX)
            local = local_files(daemon.catalog)
            return all(bucket.get(rel) == data for rel, data in local.items() if rel != folder + "scene_20240517.json")

        wait_until(catalogs_uploaded, timeout=30, interval=0.2, message="every other catalog file in the bucket, byte for byte")

        (daemon.watched / raster.name).unlink()
        wait_until(
            lambda: not [k for k in s3.keys(prefix=PREFIX) if k.startswith(folder)], timeout=30, interval=0.2,
            message="the Item and its uploaded data gone",
        )  # fmt: skip
        assert bucket_equals_local(s3, daemon.catalog)
    finally:
        daemon.close()


def scan_config(tmp_path: Path, s3: S3Server, watched: Path, *, watch_extra: str = "", **extra: object) -> Path:
    config = tmp_path / "scan.toml"
    config.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n'
        f'[[watch]]\npath = "{watched}"\n{watch_extra}\n[watch.collection]\nid = "scenes"\n' + store_section(s3, **extra)
    )
    return config


def test_symlink_to_a_file_outside_the_watched_folder_is_never_uploaded(tmp_path, s3, prepared):
    watched = tmp_path / "incoming"
    watched.mkdir()
    secret = testing.cog(prepared / "private_20240517.tif")
    (watched / "linked_20240517.tif").symlink_to(secret)
    inside = testing.cog(watched / "real_20240518.tif")
    (watched / "alias_20240519.tif").symlink_to(inside)
    result = run_cli("--log-format", "json", "scan", "--config", str(scan_config(tmp_path, s3, watched, assets="upload")))
    assert result.returncode == 0, result.stderr
    refused = [json.loads(line) for line in result.stderr.splitlines() if '"asset_refused"' in line]
    assert [e["path"] for e in refused] == [str(watched / "linked_20240517.tif")]
    assert "outside the watched folder" in refused[0]["reason"] and str(secret) in refused[0]["reason"]
    objects = s3.objects(prefix=PREFIX)
    assert not [k for k, v in objects.items() if v == secret.read_bytes() and "linked" in k], "the host's file stayed home"
    linked = json.loads(objects["scenes/2024/05/linked_20240517/linked_20240517.json"])
    assert "data" not in linked["assets"] and not [link for link in linked["links"] if link["rel"] == "via"]
    assert objects["scenes/2024/05/real_20240518/real_20240518.tif"] == inside.read_bytes()
    assert objects["scenes/2024/05/alias_20240519/alias_20240519.tif"] == inside.read_bytes(), "a link inside the folder is fine"
    status = json.loads(run_cli("status", "--json", "--config", str(scan_config(tmp_path, s3, watched, assets="upload"))).stdout)
    noted = status["sinks"]["object_store"]["last_refused"]
    assert noted["id"] == "linked_20240517" and "outside the watched folder" in noted["error"]


def test_follow_symlinks_on_the_watch_publishes_what_links_point_to(tmp_path, s3, prepared):
    watched = tmp_path / "incoming"
    watched.mkdir()
    outside = testing.cog(prepared / "shared_20240517.tif")
    (watched / "shared_20240517.tif").symlink_to(outside)
    config = scan_config(tmp_path, s3, watched, watch_extra="follow_symlinks = true", assets="upload")
    result = run_cli("scan", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "asset_refused" not in result.stderr
    objects = s3.objects(prefix=PREFIX)
    assert objects["scenes/2024/05/shared_20240517/shared_20240517.tif"] == outside.read_bytes()


def test_odd_file_names_stay_under_the_prefix(tmp_path, s3, prepared):
    from stacwatchd.sinks.object_store._store import OutsidePrefix, safe_key

    for bad in ("../escape.json", "/abs.json", "a//b.json", "a/./b.json", "a/../../b.json", ""):
        with pytest.raises(OutsidePrefix):
            safe_key(bad)
    watched = tmp_path / "incoming"
    watched.mkdir()
    odd = testing.cog(watched / "a b#c%41 ü?_20240517.tif")
    result = run_cli("scan", "--config", str(scan_config(tmp_path, s3, watched, assets="upload")))
    assert result.returncode == 0, result.stderr
    keys = s3.keys()
    assert keys and all(k.startswith(PREFIX) for k in keys)
    item_key = next(k for k in item_keys(s3.keys(prefix=PREFIX)))
    folder = item_key.rsplit("/", 1)[0]
    assert s3.objects(prefix=PREFIX)[f"{folder}/{odd.name}"] == odd.read_bytes()
    href = json.loads(s3.objects(prefix=PREFIX)[item_key])["assets"]["data"]["href"]
    assert href == "./a%20b%23c%2541%20%C3%BC%3F_20240517.tif"


# -- publish --all: the bucket made equal to the catalog -----------------------------------------


def test_publish_all_makes_the_bucket_equal_the_catalog_once_and_touches_nothing_else(tmp_path, s3):
    watched = tmp_path / "incoming"
    for i in range(4):
        testing.cog(watched / f"p{i}_2024051{i}.tif") if i else (watched.mkdir(), testing.cog(watched / "p0_20240510.tif"))
    config = scan_config(tmp_path, s3, watched)
    plain = tmp_path / "plain.toml"
    plain.write_text(without_store(config.read_text()))
    assert run_cli("scan", "--config", str(plain)).returncode == 0, "cataloged before the bucket was configured"
    client = s3.client()
    foreign = {
        "elsewhere/catalog.json": b"outside the prefix",
        PREFIX[:-1] + "-old/catalog.json": b"a sibling prefix",
        PREFIX + "index.html": b"<html>beside the catalog</html>",
        PREFIX + "notes/readme.txt": b"not a collection of ours",
    }
    orphans = {PREFIX + "scenes/2023/01/gone/gone.json": b"{}", PREFIX + "scenes/2023/01/catalog.json": b"{}"}
    stale = {PREFIX + "scenes/2024/05/catalog.json": b"{}"}
    for key, body in {**foreign, **orphans, **stale}.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)

    first = run_cli("publish", "--all", "--sink", "object_store", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "deleted 2" in first.stdout
    catalog = tmp_path / "catalog"
    objects = s3.objects(prefix=PREFIX)
    assert {k: v for k, v in objects.items() if PREFIX + k not in foreign} == local_files(catalog)
    everything = s3.objects()
    for key, body in foreign.items():
        assert everything[key] == body, f"{key} is not ours and stays"

    before = len(s3.requests())
    again = run_cli("publish", "--all", "--sink", "object_store", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert "uploaded 0, deleted 0" in again.stdout
    writes = [r for r in s3.requests()[before:] if r[0] in ("PUT", "POST", "DELETE")]
    assert writes == [], "idempotent: a second run writes nothing"
    assert [r for r in s3.requests()[before:] if r[0] == "GET" and "list-type" in r[1] or "prefix" in r[1]], "listed"


def test_publish_drains_the_backlog_when_the_store_was_down_during_scan(tmp_path, s3):
    watched = tmp_path / "incoming"
    watched.mkdir()
    testing.cog(watched / "late_20240517.tif")
    config = scan_config(tmp_path, s3, watched)
    s3.kill()
    result = run_cli("--log-format", "json", "scan", "--config", str(config))
    assert result.returncode == 0, "cataloging never waits for the store"
    assert '"sink_failing"' in result.stderr
    status = run_cli("status", "--json", "--config", str(config))
    assert json.loads(status.stdout)["outbox_depth"] >= 0
    s3.start()
    published = run_cli("publish", "--sink", "object_store", "--config", str(config))
    assert published.returncode == 0, published.stderr
    assert bucket_equals_local(s3, tmp_path / "catalog")


# -- configuration, credentials, status ------------------------------------------------------------


def test_credentials_are_refused_in_the_configuration_and_never_printed(tmp_path, s3):
    watched = tmp_path / "incoming"
    watched.mkdir()
    config = scan_config(tmp_path, s3, watched)
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text() + 'secret_access_key = "hunter2"\n')
    result = run_cli("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert "object_store" in result.stderr and "credentials never go into the configuration" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    in_url = tmp_path / "in_url.toml"
    in_url.write_text(config.read_text().replace(f'endpoint = "{s3.endpoint}"', 'endpoint = "http://key:secret@127.0.0.1:9"'))
    result = run_cli("config", "check", "--config", str(in_url))
    assert (
        result.returncode == 2
        and "object_store.endpoint" in result.stderr
        and "secret" not in result.stderr.replace("secrets", "")
    )

    checked = run_cli("config", "check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["object_store"]["url"] == f"s3://{BUCKET}/{PREFIX}"
    secrets = (CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    for value in secrets:
        assert value not in checked.stdout

    s3.kill()
    testing.cog(watched / "x_20240517.tif")
    failing = run_cli("--log-format", "json", "--log-level", "debug", "scan", "--config", str(config))
    assert '"sink_failing"' in failing.stderr
    for value in secrets:
        assert value not in failing.stderr + failing.stdout, "credentials never logged"


def test_status_prints_the_public_root_url(tmp_path, s3):
    watched = tmp_path / "incoming"
    watched.mkdir()
    testing.cog(watched / "s_20240517.tif")
    config = scan_config(tmp_path, s3, watched)
    assert run_cli("scan", "--config", str(config)).returncode == 0
    status = run_cli("status", "--config", str(config))
    url = f"{s3.endpoint}/{BUCKET}/{PREFIX}catalog.json"
    assert f"public:   {url}" in status.stdout.splitlines()
    public = tmp_path / "public.toml"
    public.write_text(config.read_text() + 'public_base_url = "https://data.example.org/stac/"\n')
    status = run_cli("status", "--json", "--config", str(public))
    assert json.loads(status.stdout)["public_root_url"] == "https://data.example.org/stac/catalog.json"


def test_a_file_url_mirrors_the_catalog_into_a_folder_and_publish_all_is_idempotent(tmp_path):
    watched = tmp_path / "incoming"
    watched.mkdir()
    for i in range(2):
        testing.cog(watched / f"f{i}_2024051{i + 1}.tif")
    mirror = tmp_path / "mirror"
    config = tmp_path / "file.toml"
    config.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n[[watch]]\npath = "{watched}"\n[watch.collection]\nid = "scenes"\n'
        f'[object_store]\nurl = "file://{mirror}/"\n'
    )
    assert run_cli("scan", "--config", str(config)).returncode == 0
    assert local_files(mirror) == local_files(tmp_path / "catalog")
    (mirror / "scenes" / "stale.json").write_text("{}")
    first = run_cli("publish", "--all", "--sink", "object_store", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "uploaded 0, deleted 1" in first.stdout
    again = run_cli("publish", "--all", "--sink", "object_store", "--config", str(config))
    assert "uploaded 0, deleted 0" in again.stdout
    assert local_files(mirror) == local_files(tmp_path / "catalog")
