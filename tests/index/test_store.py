from datetime import UTC, datetime

import pytest

from brainrank.index.errors import InputError
from brainrank.index.records import Document
from brainrank.index.store import DocumentStore


def doc(i, text="some text", **kw):
    return Document(doc_id=f"d{i}", title=f"title {i}", text=text, **kw)


def test_upsert_counts_and_version(tmp_path):
    store = DocumentStore(tmp_path / "docs.sqlite")
    with store.transaction():
        c = store.upsert([doc(1), doc(2)])
        store.bump_version()
    assert (c.added, c.updated, c.unchanged) == (2, 0, 0)
    with store.transaction():
        c = store.upsert([doc(1), doc(2, text="changed"), doc(3)])
        store.bump_version()
    assert (c.added, c.updated, c.unchanged) == (1, 1, 1)
    assert store.version == 2
    assert store.count() == 3
    assert store.get(["d2"])["d2"].text == "changed"


def test_metadata_change_counts_as_update(tmp_path):
    store = DocumentStore(tmp_path / "docs.sqlite")
    ts = datetime(2025, 1, 2, tzinfo=UTC)
    with store.transaction():
        store.upsert([doc(1)])
    with store.transaction():
        c = store.upsert([doc(1, timestamp=ts, fields={"price": 3.5})])
    assert c.updated == 1
    got = store.get(["d1"])["d1"]
    assert got.timestamp == ts and got.fields == {"price": 3.5}
    with store.transaction():  # a tag alone changes too
        c = store.upsert([doc(1, timestamp=ts, fields={"price": 3.5}, tags={"brand": "Voltra"})])
    assert c.updated == 1
    got = store.get(["d1"])["d1"]
    assert got.fields == {"price": 3.5} and got.tags == {"brand": "Voltra"}
    with store.transaction():
        c = store.upsert([doc(1, timestamp=ts, fields={"price": 3.5}, tags={"brand": "Voltra"})])
    assert (c.updated, c.unchanged) == (0, 1)


def test_failed_transaction_keeps_previous_state(tmp_path):
    path = tmp_path / "docs.sqlite"
    store = DocumentStore(path)
    with store.transaction():
        store.upsert([doc(1)])
        store.bump_version()
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert([doc(2)])
        store.bump_version()
        raise RuntimeError("killed")
    reopened = DocumentStore(path)
    assert reopened.count() == 1 and reopened.version == 1


def test_delete_unknown_id_deletes_nothing(tmp_path):
    store = DocumentStore(tmp_path / "docs.sqlite")
    with store.transaction():
        store.upsert([doc(1), doc(2)])
    with pytest.raises(InputError, match="'nope'"), store.transaction():
        store.delete(["d1", "nope"])
    assert store.count() == 2
    with store.transaction():
        assert store.delete(["d1"]) == 1
    assert list(store.hashes()) == ["d2"]


def test_iter_documents_keeps_requested_order(tmp_path):
    store = DocumentStore(tmp_path / "docs.sqlite")
    with store.transaction():
        store.upsert([doc(i) for i in range(5)])
    assert [d.doc_id for d in store.iter_documents(["d3", "d0", "missing", "d4"])] == [
        "d3",
        "d0",
        "d4",
    ]
    assert [d.doc_id for d in store.iter_documents()] == [f"d{i}" for i in range(5)]


def test_corrupt_store_is_reported(tmp_path):
    from brainrank.index.errors import BrainrankError

    path = tmp_path / "docs.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BrainrankError, match="unreadable"):
        DocumentStore(path)
