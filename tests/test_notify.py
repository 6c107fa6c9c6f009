"""Change notifications to webhooks, as users configure and receive them.

Real processes only: ``stacwatchd run`` / ``scan`` / ``notify test`` subprocesses, real
rasters, and a real HTTP receiver on 127.0.0.1 that checks every signature.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from daemon_support import DaemonProcess
from support.receivers import WebhookReceiver

from stacwatchd import testing
from stacwatchd.state.store import State
from stacwatchd.testing import wait_until

SECRET = "hunter2-" + uuid.uuid4().hex
TOKEN = "abc"  # in every receiver URL's query: a token, never logged


def hook(url: str, **keys: Any) -> str:
    """A ``[[notify.webhook]]`` table with fast retries; ``keys`` override."""
    values: dict[str, Any] = {
        "url": url, "secret_env": "HOOK_SECRET", "timeout_seconds": 1.0,
        "retry_initial_seconds": 0.05, "retry_max_seconds": 0.3, **keys,
    }  # fmt: skip
    return "[[notify.webhook]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if v is not None)


def notifying_daemon(base: Path, *tables: str, public_base_url: str | None = None) -> DaemonProcess:
    extra = "[notify]\n" + (f'public_base_url = "{public_base_url}"\n' if public_base_url else "") + "".join(tables)
    daemon = DaemonProcess(base, extra=extra)
    daemon.env["HOOK_SECRET"] = SECRET
    return daemon


def stacwatchd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", *args], check=False, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip


def status(daemon: DaemonProcess) -> dict[str, Any]:
    result = stacwatchd("status", "--config", str(daemon.config), "--json")
    return json.loads(result.stdout)


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone?token={TOKEN}"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "prepared"
    folder.mkdir()
    return folder


def test_every_change_is_posted_once_signed_in_commit_order_with_the_item_as_written(tmp_path, source):
    with WebhookReceiver(SECRET.encode()) as receiver:
        daemon = notifying_daemon(tmp_path, hook(receiver.url))
        try:
            daemon.start()
            for name in ("a_20240517T103000.tif", "b_20240601T000000.tif", "c_20240702T000000.tif"):
                testing.utm(source / name)
                shutil.copy(source / name, daemon.watched / name)
            daemon.wait_items({"a_20240517T103000", "b_20240601T000000", "c_20240702T000000"})
            wait_until(lambda: sum(m["event"] == "item.added" for m in receiver.delivered()) == 3, timeout=30)
            testing.utm(source / "a_20240517T103000.tif", bounds=(600_000, 5_000_000, 600_640, 5_000_640))
            shutil.copy(source / "a_20240517T103000.tif", daemon.watched / "a_20240517T103000.tif")
            wait_until(lambda: any(m["event"] == "item.updated" for m in receiver.delivered()), timeout=30)
            on_disk = daemon.items()
            (daemon.watched / "b_20240601T000000.tif").unlink()
            wait_until(lambda: any(m["event"] == "item.removed" for m in receiver.delivered()), timeout=30)
        finally:
            daemon.close()
    receipts = receiver.snapshot()
    assert receipts and all(r.signed and r.answer == "ok" for r in receipts)
    assert all(r.headers["content-type"] == "application/json" for r in receipts)
    assert all(r.headers["x-stacwatchd-id"] == r.message["id"] for r in receipts)
    messages = [r.message for r in receipts]
    assert all(set(m) >= {"id", "seq", "event", "collection", "item_id", "time", "item"} for m in messages)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "one message per change, in commit order"
    assert len({m["id"] for m in messages}) == len(messages)
    assert all(uuid.UUID(m["id"]) for m in messages)
    items = [(m["event"], m["item_id"]) for m in messages if m["event"].startswith("item.")]
    assert sorted(items[:3]) == [("item.added", i) for i in ("a_20240517T103000", "b_20240601T000000", "c_20240702T000000")]
    assert items[3:] == [("item.updated", "a_20240517T103000"), ("item.removed", "b_20240601T000000")]
    assert messages[0]["event"] == "collection.created" and messages[0]["collection_document"]["id"] == "scenes"
    assert {m["event"] for m in messages[1:] if m["event"].startswith("collection.")} == {"collection.changed"}
    by_event = {(m["event"], m["item_id"]): m for m in messages}
    assert by_event[("item.updated", "a_20240517T103000")]["item"] == on_disk["a_20240517T103000"]
    assert by_event[("item.added", "c_20240702T000000")]["item"] == on_disk["c_20240702T000000"]
    removed = by_event[("item.removed", "b_20240601T000000")]
    assert removed["item"] == on_disk["b_20240601T000000"], "a removal carries the last known Item"
    assert removed["href"].startswith("file://") and removed["href"].endswith("/b_20240601T000000.json")


def test_scan_announces_its_changes_with_absolute_hrefs_under_the_public_base_url(tmp_path, source):
    testing.many_cogs(tmp_path / "incoming", 3)
    with WebhookReceiver(SECRET.encode()) as receiver:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[catalog]\nroot = "{tmp_path / "catalog"}"\n[[watch]]\npath = "{tmp_path / "incoming"}"\n'
            f'[watch.collection]\nid = "scenes"\n[watch.items]\nasset_href_base = "s3://bucket/raw/"\n'
            f'[notify]\npublic_base_url = "https://data.example.org/stac"\n' + hook(receiver.url)
        )
        result = stacwatchd("scan", "--config", str(config), env={"HOOK_SECRET": SECRET})
        assert result.returncode == 0, result.stderr
    messages = receiver.delivered()
    assert messages[0]["event"] == "collection.created"
    # The writer may commit the three in more than one batch: each later batch that
    # widens the extent also announces the collection's change.
    assert {m["event"] for m in messages[1:] if m["event"].startswith("collection.")} <= {"collection.changed"}
    added = [m for m in messages if m["event"].startswith("item.")]
    assert [m["event"] for m in added] == ["item.added"] * 3
    for message in added:
        item = message["item"]
        url = f"https://data.example.org/stac/scenes/{item['id'][-15:-11]}/{item['id'][-11:-9]}/{item['id']}/{item['id']}.json"
        assert message["href"] == url
        links = {link["rel"]: link["href"] for link in item["links"]}
        assert links["self"] == url
        assert links["root"] == "https://data.example.org/stac/catalog.json"
        assert links["collection"] == "https://data.example.org/stac/scenes/collection.json"
        assert links["parent"] == url.rsplit("/", 2)[0] + "/catalog.json"
        assert item["assets"]["data"]["href"].startswith("s3://bucket/raw/")
    collection = messages[0]["collection_document"]
    assert {link["rel"]: link["href"] for link in collection["links"]}[
        "self"
    ] == "https://data.example.org/stac/scenes/collection.json"


def test_events_and_collections_pick_what_a_target_receives(tmp_path):
    testing.many_cogs(tmp_path / "scenes", 2, prefix="s")
    testing.many_cogs(tmp_path / "other", 2, prefix="o")
    with WebhookReceiver(SECRET.encode()) as removals, WebhookReceiver(SECRET.encode()) as other:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[catalog]\nroot = "{tmp_path / "catalog"}"\n'
            f'[[watch]]\npath = "{tmp_path / "scenes"}"\n[[watch]]\npath = "{tmp_path / "other"}"\n'
            + hook(removals.url, events=["item.removed"])
            + hook(other.url, collections=["other"])
        )
        assert stacwatchd("scan", "--config", str(config), env={"HOOK_SECRET": SECRET}).returncode == 0
        next((tmp_path / "scenes").glob("*.tif")).unlink()
        assert stacwatchd("scan", "--config", str(config), env={"HOOK_SECRET": SECRET}).returncode == 0
    assert [(m["event"], m["collection"]) for m in removals.delivered()] == [("item.removed", "scenes")]
    events = [(m["event"], m["collection"]) for m in other.delivered()]
    assert events[0] == ("collection.created", "other")
    assert [e for e in events if e[0].startswith("item.")] == [("item.added", "other")] * 2
    # Two batches instead of one also announce the collection's change between them.
    assert set(events[1:]) <= {("item.added", "other"), ("collection.changed", "other")}


def test_refused_message_is_dropped_after_max_attempts_logged_and_shown_in_status(tmp_path, source):
    def answer(n: int, message: dict[str, Any]) -> int:
        return 422 if message.get("item_id") == "bad_20240517" else 200

    with WebhookReceiver(SECRET.encode(), answer) as receiver:
        daemon = notifying_daemon(tmp_path, hook(receiver.url, max_attempts=3))
        name = f"webhook:127.0.0.1:{receiver.server.server_address[1]}/1"
        try:
            daemon.start()
            for stem in ("good_20240516", "bad_20240517", "fine_20240518"):
                testing.utm(daemon.watched / f"{stem}.tif")
                daemon.wait_items(set(daemon.items()) | {stem})
            dropped = daemon.wait_events("notify_dropped")
            wait_until(lambda: {"good_20240516", "fine_20240518"} <= {m["item_id"] for m in receiver.delivered()}, timeout=30)
            report = wait_until(lambda: (s := status(daemon))["sinks"][name].get("last_refused") and s, timeout=30)
            readable = stacwatchd("status", "--config", str(daemon.config)).stdout
        finally:
            daemon.close()
    bad = [r for r in receiver.snapshot() if r.message.get("item_id") == "bad_20240517"]
    assert len(bad) == 3 and {r.message["id"] for r in bad} == {dropped[0]["id"]}
    assert dropped[0]["sink"] == name and dropped[0]["reason"].startswith("HTTP 422") and dropped[0]["attempts"] == 3
    refused = report["sinks"][name]["last_refused"]
    assert refused["collection"] == "scenes" and refused["id"] == "bad_20240517" and refused["dropped"] == 1
    assert refused["message_id"] == dropped[0]["id"] and refused["error"].startswith("HTTP 422")
    assert "last refused: scenes/bad_20240517" in readable and "HTTP 422" in readable


def test_server_errors_are_retried_honouring_retry_after(tmp_path):
    def answer(n: int, message: dict[str, Any]) -> Any:
        return (503, {"Retry-After": "2"}) if n == 0 else 200

    with WebhookReceiver(SECRET.encode(), answer) as receiver:
        daemon = notifying_daemon(tmp_path, hook(receiver.url, retry_max_seconds=5.0))
        try:
            daemon.start()
            testing.utm(daemon.watched / "a_20240517.tif")
            wait_until(lambda: any(m["event"] == "item.added" for m in receiver.delivered()), timeout=60)
        finally:
            daemon.close()
    first, second = receiver.snapshot()[:2]
    assert first.answer == "failed" and second.message["id"] == first.message["id"]
    assert second.at - first.at >= 1.9, "Retry-After: 2 asks for two seconds"


def test_secrets_never_appear_in_logs_config_check_status_or_errors(tmp_path):
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text(SECRET + "\n")

    def answer(n: int, message: dict[str, Any]) -> Any:
        return [500, "hang", 404, 200][n % 4]

    down = dead_url()
    with WebhookReceiver(SECRET.encode(), answer, hang_seconds=1.5) as receiver:
        daemon = notifying_daemon(
            tmp_path, hook(receiver.url, secret_env=None, secret_file=str(secret_file)),
            hook(down, name="down", secret_env=None, secret_file=str(secret_file)),
        )  # fmt: skip
        try:
            daemon.start()
            for i in range(3):
                testing.utm(daemon.watched / f"s{i}_20240517.tif")
            wait_until(lambda: sum(m["event"] == "item.added" for m in receiver.delivered()) == 3, timeout=60)
            report = wait_until(lambda: "last_error" in (s := status(daemon))["daemon"]["sinks"]["down"] and s, timeout=30)
            test_run = stacwatchd("notify", "test", "--config", str(daemon.config))
        finally:
            daemon.close()
        checked = stacwatchd("config", "check", "--config", str(daemon.config))
    assert receiver.snapshot() and all(r.signed for r in receiver.snapshot()), "signed with the file's secret, newline stripped"
    assert test_run.returncode == 1 and "down: failed: cannot reach the receiver" in test_run.stdout
    assert checked.returncode == 0 and str(secret_file) in checked.stdout
    log = daemon.log_path.read_text()
    assert daemon.events("sink_failing")
    for text in (log, json.dumps(report), checked.stdout + checked.stderr, test_run.stdout + test_run.stderr):
        assert SECRET not in text
        assert f"token={TOKEN}" not in text and "/gone" not in text and "/hooks/stac" not in text

    bad = tmp_path / "inline.toml"
    bad.write_text(daemon.config.read_text() + f'[[notify.webhook]]\nurl = "http://127.0.0.1:9/x"\nsecret = "{SECRET}"\n')
    refused = stacwatchd("config", "check", "--config", str(bad))
    assert refused.returncode == 2 and "notify.webhook.2.secret: unknown key" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr


def test_missing_secret_is_a_clear_error_naming_the_variable(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n' + hook("http://127.0.0.1:9/x", secret_env="NO_SUCH_SECRET_VAR")
    )
    result = stacwatchd("notify", "test", "--config", str(config))
    assert result.returncode == 2
    assert "notify.webhook.0.secret_env: environment variable NO_SUCH_SECRET_VAR is not set" in result.stderr


def test_notify_test_sends_a_signed_test_event_to_every_target_or_the_one_named(tmp_path):
    with WebhookReceiver(SECRET.encode()) as one, WebhookReceiver(SECRET.encode(), lambda n, m: 500) as broken:
        config = tmp_path / "config.toml"
        config.write_text(f'[catalog]\nroot = "{tmp_path / "catalog"}"\n' + hook(one.url) + hook(broken.url, name="broken"))
        env = {"HOOK_SECRET": SECRET}
        everything = stacwatchd("notify", "test", "--config", str(config), env=env)
        name = f"webhook:127.0.0.1:{one.server.server_address[1]}/1"
        only = stacwatchd("notify", "test", "--config", str(config), "--target", name, env=env)
        unknown = stacwatchd("notify", "test", "--config", str(config), "--target", "webhook:nowhere/1", env=env)
    assert everything.returncode == 1
    assert f"{name}: delivered (HTTP 200" in everything.stdout and "broken: failed: HTTP 500" in everything.stdout
    assert only.returncode == 0 and only.stdout.count("delivered") == 1 and "broken" not in only.stdout
    assert unknown.returncode == 2 and name in unknown.stderr and "broken" in unknown.stderr
    tests = [r for r in one.snapshot()]
    assert len(tests) == 2 and all(r.signed and r.message["event"] == "notify.test" for r in tests)
    assert len(broken.snapshot()) == 1 and broken.snapshot()[0].signed


def test_dead_webhook_delays_nothing_else_and_removing_it_drops_its_backlog_with_one_log_line(tmp_path, source):
    dead = hook(dead_url(), name="dead")
    with WebhookReceiver(SECRET.encode()) as receiver:
        daemon = notifying_daemon(tmp_path, hook(receiver.url, name="alive"), dead)
        try:
            daemon.start()
            made = testing.many_cogs(source, 20)
            for path in made:
                shutil.copy(path, daemon.watched / path.name)
            daemon.wait_items({p.stem for p in made}, timeout=90)
            wait_until(lambda: {m["item_id"] for m in receiver.delivered()} >= {p.stem for p in made}, timeout=60)

            def both_shown() -> dict[str, Any] | None:
                sinks = status(daemon)["daemon"].get("sinks", {})
                return sinks if sinks.get("alive", {}).get("backlog") == 0 and "last_error" in sinks.get("dead", {}) else None

            sinks = wait_until(both_shown, timeout=30)
            assert sinks["dead"]["backlog"] >= 21 and "Connection refused" in sinks["dead"]["last_error"]
            assert sinks["alive"]["last_success"] and sinks["dead"]["last_success"] is None
            assert daemon.stop() == 0
            daemon.config.write_text(daemon.config.read_text().replace(dead, ""))
            daemon.start()
            testing.utm(daemon.watched / "later_20240517.tif")
            wait_until(lambda: "later_20240517" in {m["item_id"] for m in receiver.delivered()}, timeout=60)
        finally:
            daemon.close()
    dropped = daemon.events("sink_backlog_dropped")
    assert [e["sink"] for e in dropped] == ["dead"]
    state = State(daemon.catalog / ".stacwatchd" / "state.db", readonly=True)
    try:
        assert [name for name, *_ in state.sinks()] == ["alive"]
        assert state.backlog("dead") == 0
    finally:
        state.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('url = "http://h/x"\n', "set secret_env or secret_file (exactly one)"),
        ('url = "http://h/x"\nsecret_env = "A"\nsecret_file = "/s"\n', "set secret_env or secret_file (exactly one)"),
        ('url = "ftp://h/x"\nsecret_env = "A"\n', "notify.webhook.0.url: Value error, must be an http:// or https:// URL"),
        ('url = "http://user:pw@h/x"\nsecret_env = "A"\n', "the url must not contain a password"),
        ('url = "http://h/x"\nsecret_env = "A"\nevents = ["item.moved"]\n', "notify.webhook.0.events.0"),
    ],
)
def test_configuration_refuses_unsigned_ambiguous_or_unknown_webhooks(tmp_path, table, message):
    config = tmp_path / "config.toml"
    config.write_text("[[notify.webhook]]\n" + table)
    result = stacwatchd("config", "check", "--config", str(config))
    assert result.returncode == 2 and message in result.stderr and str(config) in result.stderr
    assert "pw" not in result.stderr


def test_two_targets_with_one_name_are_refused(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(hook("http://h/a", name="x") + hook("http://h/b", name="x"))
    result = stacwatchd("config", "check", "--config", str(config))
    assert result.returncode == 2 and "two targets are named x" in result.stderr
