"""The state store's write transaction: held-back inserts behave like immediate ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacwatchd.state.store import State, StateUnwritable


def _put(tx, path: str, item_id: str = "a") -> None:
    tx.put_source(path, "/w", "c", (1, 2, 3, 4), "cataloged", "data", item_id)


def test_a_read_inside_the_transaction_sees_the_rows_just_written(tmp_path: Path):
    state = State(tmp_path / "state.db")
    with state.transaction() as tx:
        _put(tx, "/w/a.tif")
        _put(tx, "/w/b.tif", "b")
        tx.count_partition("c", "2024", +1)
        tx.count_partition("c", "2024", +1)
        assert state.source("/w/a.tif") is not None
        assert state.known_sources(["/w/a.tif", "/w/b.tif", "/w/c.tif"]) == {"/w/a.tif", "/w/b.tif"}
        tx.count_partition("c", "2024", -2)  # runs at once, after the two held increments
    assert state.partition_names("c") == []
    assert state.source("/w/b.tif").item_id == "b"
    state.close()


def test_an_operation_undone_by_its_savepoint_leaves_nothing_and_the_rest_commits(tmp_path: Path):
    state = State(tmp_path / "state.db")
    with state.transaction() as tx:
        _put(tx, "/w/kept.tif")
        with pytest.raises(ValueError), tx.savepoint():
            _put(tx, "/w/undone.tif")
            raise ValueError("the operation's own fault")
        _put(tx, "/w/after.tif")
    assert state.source("/w/undone.tif") is None
    assert state.known_sources(["/w/kept.tif", "/w/after.tif"]) == {"/w/kept.tif", "/w/after.tif"}
    state.close()


def test_a_failed_transaction_leaves_none_of_its_held_rows(tmp_path: Path):
    state = State(tmp_path / "state.db")
    with pytest.raises(RuntimeError), state.transaction() as tx:
        _put(tx, "/w/a.tif")
        raise RuntimeError("the batch failed")
    with state.transaction() as tx:
        _put(tx, "/w/b.tif")
    assert state.source("/w/a.tif") is None and state.source("/w/b.tif") is not None
    state.close()


def test_a_held_row_the_database_refuses_fails_the_transaction_with_the_state_path(tmp_path: Path):
    state = State(tmp_path / "state.db")
    with pytest.raises(StateUnwritable) as caught, state.transaction() as tx:
        _put(tx, "/w/a.tif")
        tx.db.hold("INSERT INTO no_such_table VALUES (?)", [(1,)])
    assert caught.value.path == tmp_path / "state.db"
    assert state.source("/w/a.tif") is None
    state.close()
