"""Change notifications to SNS, received through SQS queues subscribed to the topic.

moto runs in server mode on 127.0.0.1 (started here); the daemon and ``scan`` are real
subprocesses that reach it through boto3 with ``endpoint`` set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_support import DaemonProcess
from support.receivers import MotoServer

from stacwatchd import testing
from stacwatchd.state.store import State
from stacwatchd.testing import wait_until

pytest.importorskip("boto3")


@pytest.fixture
def moto() -> Any:
    with MotoServer() as server:
        yield server


def queue(moto: MotoServer, topic: str, name: str, filter_policy: dict[str, Any] | None = None, **attributes: str) -> str:
    """An SQS queue subscribed to ``topic`` with raw message delivery; returns its URL."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = {"RawMessageDelivery": "true"}
    if filter_policy is not None:
        subscription["FilterPolicy"] = json.dumps(filter_policy)
    moto.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=subscription)
    return url


def received(moto: MotoServer, url: str, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move what the queue holds now into ``into`` (body parsed, attributes as values)."""
    sqs = moto.client("sqs")
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        messages = answer.get("Messages") or []
        if not messages:
            return into
        for message in messages:
            attributes = {k: v["StringValue"] for k, v in (message.get("MessageAttributes") or {}).items()}
            types = {k: v["DataType"] for k, v in (message.get("MessageAttributes") or {}).items()}
            into.append({"body": json.loads(message["Body"]), "attributes": attributes, "types": types})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def catalog_items(root: Path) -> dict[str, dict[str, Any]]:
    docs = (json.loads(p.read_bytes()) for p in root.rglob("*.json") if p.name not in ("catalog.json", "collection.json"))
    return {doc["id"]: doc for doc in docs if doc.get("type") == "Feature"}


def sns_table(topic: str, endpoint: str, **keys: Any) -> str:
    values = {"topic_arn": topic, "endpoint": endpoint, "retry_initial_seconds": 0.05, "retry_max_seconds": 0.5, **keys}
    return "[[notify.sns]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def test_subscribed_queue_receives_every_change_with_the_item_body_and_filterable_attributes(tmp_path: Path, moto):
    topic = moto.client("sns").create_topic(Name="stac-changes")["TopicArn"]
    everything = queue(moto, topic, "everything")
    only_other = queue(moto, topic, "only-other", {"collection": ["other"]})
    other = tmp_path / "other"
    other.mkdir()
    extra = f'[[watch]]\npath = "{other}"\n[watch.collection]\nid = "other"\n' + sns_table(topic, moto.endpoint)
    daemon = DaemonProcess(tmp_path, extra=extra)
    daemon.env.update(moto.env)
    got: list[dict[str, Any]] = []
    try:
        daemon.start()
        for i in range(4):
            testing.utm(daemon.watched / f"s{i}_2024051{i}.tif")
        for i in range(2):
            testing.geographic(other / f"o{i}_2024060{i + 1}.tif")
        wait_until(
            lambda: sum(m["attributes"].get("event") == "item.added" for m in received(moto, everything, got)) == 6, timeout=90
        )
        on_disk = catalog_items(daemon.catalog)
        (daemon.watched / "s0_20240510.tif").unlink()
        wait_until(lambda: any(m["attributes"]["event"] == "item.removed" for m in received(moto, everything, got)), timeout=60)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    state = State(daemon.catalog / ".stacwatchd" / "state.db", readonly=True)
    try:
        end = state.stream_end("changes")
    finally:
        state.close()
    received(moto, everything, got)
    assert sorted(int(m["attributes"]["seq"]) for m in got) == list(range(1, end + 1)), "every change, once"
    items = [m for m in got if m["attributes"]["event"].startswith("item.")]
    for message in items:
        body, attributes = message["body"], message["attributes"]
        assert (
            body["type"] == "Feature" and body["id"] == attributes["item_id"] and body["collection"] == attributes["collection"]
        )
        assert attributes["datetime"] == body["properties"]["datetime"]
        assert json.loads(attributes["bbox"]) == body["bbox"] and message["types"]["bbox"] == "String.Array"
        assert attributes["content"] == "item"
    added = {m["body"]["id"]: m["body"] for m in items if m["attributes"]["event"] == "item.added"}
    assert added == on_disk, "the body is the Item JSON as written"
    removed = [m for m in items if m["attributes"]["event"] == "item.removed"]
    assert [m["body"] for m in removed] == [on_disk["s0_20240510"]], "a removal carries the last known Item"
    collections = [m for m in got if m["attributes"]["event"].startswith("collection.")]
    assert {(m["attributes"]["event"], m["attributes"]["collection"]) for m in collections if m["attributes"]["event"] == "collection.created"} == {
        ("collection.created", "scenes"), ("collection.created", "other"),
    }  # fmt: skip
    assert all(m["body"]["type"] == "Collection" and m["attributes"]["content"] == "collection" for m in collections)

    filtered = received(moto, only_other, [])
    assert filtered and {m["attributes"]["collection"] for m in filtered} == {"other"}
    assert sorted(m["attributes"]["id"] for m in filtered) == sorted(
        m["attributes"]["id"] for m in got if m["attributes"]["collection"] == "other"
    ), "the filter policy lets every message of its collection through, and no other"


def scan(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacwatchd", "--log-format", "json", "--log-level", "debug", "scan", "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=300, env=dict(os.environ, **env),
    )  # fmt: skip


def test_item_over_the_sns_limit_is_announced_with_a_link_to_it(tmp_path: Path, moto):
    incoming = tmp_path / "incoming"
    testing.write_raster(incoming / "wide_20240105.tif", width=4, height=4, count=1500,
                         descriptions=[f"band number {i} with a long description" for i in range(1500)])  # fmt: skip
    testing.utm(incoming / "small_20240106.tif")
    topic = moto.client("sns").create_topic(Name="stac-changes")["TopicArn"]
    url = queue(moto, topic, "everything")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n[[watch]]\npath = "{incoming}"\n'
        f'[notify]\npublic_base_url = "https://data.example.org/stac/"\n' + sns_table(topic, moto.endpoint)
    )
    result = scan(config, moto.env)
    assert result.returncode == 0, result.stderr
    by_item = {m["attributes"].get("item_id"): m for m in received(moto, url, [])}
    wide, small = by_item["wide_20240105"], by_item["small_20240106"]
    assert wide["attributes"]["content"] == "link" and wide["attributes"]["event"] == "item.added"
    item_url = "https://data.example.org/stac/incoming/2024/01/wide_20240105/wide_20240105.json"
    assert wide["body"]["links"] == [{"rel": "item", "href": item_url, "type": "application/geo+json"}]
    assert (
        len((tmp_path / "catalog" / "incoming" / "2024" / "01" / "wide_20240105" / "wide_20240105.json").read_bytes()) > 262_144
    )
    assert small["attributes"]["content"] == "item" and small["body"]["id"] == "small_20240106"
    assert {link["rel"]: link["href"] for link in small["body"]["links"]}["self"].startswith(
        "https://data.example.org/stac/incoming/"
    )


def test_fifo_topic_gets_collection_groups_and_message_ids_for_deduplication(tmp_path: Path, moto):
    testing.many_cogs(tmp_path / "incoming", 3)
    topic = moto.client("sns").create_topic(
        Name="stac-changes.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"}
    )["TopicArn"]
    url = queue(moto, topic, "everything.fifo", FifoQueue="true")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[catalog]\nroot = "{tmp_path / "catalog"}"\n[[watch]]\npath = "{tmp_path / "incoming"}"\n'
        + sns_table(topic, moto.endpoint)
    )
    assert scan(config, moto.env).returncode == 0
    deadline = time.monotonic() + 30
    got: list[dict[str, Any]] = []
    while sum(m["attributes"]["event"] == "item.added" for m in got) < 3 and time.monotonic() < deadline:
        received(moto, url, got)
    events = [m["attributes"]["event"] for m in got]
    assert events[0] == "collection.created" and events.count("item.added") == 3
    # The scan may commit the three in more than one batch; each later one that widens the
    # extent announces the collection's change too.
    assert set(events[1:]) <= {"item.added", "collection.changed"}
    assert [int(m["attributes"]["seq"]) for m in got] == list(range(1, len(got) + 1))
