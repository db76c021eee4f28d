"""The PostgreSQL store against a real throw-away PostgreSQL (tests/support/state_servers.py):
two gateways' stores on one database never claim a line twice, a dead gateway's lines come back
after their lease and its late result is refused, file bodies (in chunks) reach every gateway,
stored responses are shared, and an unreachable database is a clear 503 that heals."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batch_store import batch, ok

from llmserver.errors import StoreUnavailableError
from llmserver.jobs.postgres_responses import PostgresResponseStore
from llmserver.jobs.postgres_store import CHUNK, PostgresStore
from llmserver.jobs.records import FileRecord
from llmserver.jobs.response_store import StoredResponse
from llmserver.jobs.store import now
from llmserver.pg import Database
from support.state_servers import Postgres


@pytest.fixture
def url(postgres: Postgres) -> str:
    return postgres.database()


@pytest.fixture
def dbs(url: str) -> Iterator[tuple[Database, Database]]:
    a, b = Database(url), Database(url)
    yield a, b
    a.close()
    b.close()


def stores(
    dbs: tuple[Database, Database], tmp_path: Path, lease_s: float = 3600
) -> tuple[PostgresStore, PostgresStore]:
    a = PostgresStore(dbs[0], tmp_path / "a", "gw-a", lease_s)
    b = PostgresStore(dbs[1], tmp_path / "b", "gw-b", lease_s)
    return a, b


def claim_until(store: PostgresStore, batch_id: str, limit: int) -> list[int]:
    """Lines claimed by ``store`` once the lease of another gateway's claim has run out."""
    for _ in range(1000):
        if lines := store.claim(batch_id, limit):
            return [line.line_no for line in lines]
        time.sleep(0.01)
    raise AssertionError("the lease never ran out")


def test_two_gateways_claiming_at_once_take_each_line_exactly_once(
    dbs: tuple[Database, Database], tmp_path: Path
) -> None:
    a, b = stores(dbs, tmp_path)
    a.add_batch(batch(200), None)
    assert b.get_batch("batch_test") is not None  # created on A, visible on B

    def drain(store: PostgresStore) -> list[int]:
        taken: list[int] = []
        while lines := store.claim("batch_test", 3):
            taken += [line.line_no for line in lines]
            for line in lines:
                assert store.finish_line(line, ok(line.line_no))
        return taken

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got_a, got_b = pool.map(drain, (a, b))
    assert got_a  # both took lines
    assert got_b
    assert sorted(got_a + got_b) == list(range(1, 201))  # every line once, none twice
    record = b.get_batch("batch_test")
    assert record is not None
    assert (record.completed, record.failed, record.prompt_tokens) == (200, 0, 600)
    assert [r.line_no for r in a.results("batch_test")] == list(range(1, 201))


def test_a_dead_gateways_lines_come_back_after_the_lease_and_its_late_result_is_refused(
    dbs: tuple[Database, Database], tmp_path: Path
) -> None:
    a, b = stores(dbs, tmp_path, lease_s=0.2)
    a.add_batch(batch(3), None)
    held = a.claim("batch_test", 2)
    assert [line.line_no for line in held] == [1, 2]
    [third] = b.claim("batch_test", 1)
    assert third.line_no == 3
    assert b.finish_line(third, ok(3)) is True
    again = claim_until(b, "batch_test", 5)  # A stopped renewing: its lease runs out
    assert again == [1, 2]
    assert a.finish_line(held[0], ok(1)) is False  # A comes back late: counted nothing
    record = b.get_batch("batch_test")
    assert record is not None
    assert record.completed == 1  # B's own line only


def test_a_renewed_lease_keeps_the_line_and_recover_frees_only_this_gateways_lines(
    dbs: tuple[Database, Database], tmp_path: Path
) -> None:
    a, b = stores(dbs, tmp_path, lease_s=3600)
    a.add_batch(batch(2), None)
    [held_a] = a.claim("batch_test", 1)
    [held_b] = b.claim("batch_test", 1)
    a.renew([held_a.claim])
    assert b.claim("batch_test", 5) == []
    b.recover()  # B restarts under its own id: its line is pending again, A's is not
    assert [line.line_no for line in a.claim("batch_test", 5)] == [held_b.line_no]
    assert a.finish_line(held_a, ok(1)) is True


def test_a_file_stored_on_one_gateway_is_read_whole_on_the_other(
    dbs: tuple[Database, Database], tmp_path: Path
) -> None:
    a, b = stores(dbs, tmp_path)
    body = bytes(range(256)) * (CHUNK * 5 // 2 // 256)  # two and a half chunks
    upload = a.file_path(".upload-1")
    upload.write_bytes(body)
    record = FileRecord("file-1", "nas", "batch", "in.jsonl", len(body), now())
    a.add_file(record, upload, None)
    assert b.file_path("file-1").read_bytes() == body
    assert [f.id for f in b.list_files("nas", "batch", None, 10)] == ["file-1"]
    out = tmp_path / "out"
    out.write_bytes(b"first\n")
    a.add_output_file(FileRecord("file-o", "nas", "batch_output", "o", 6, 1), out)
    assert b.file_path("file-o").read_bytes() == b"first\n"
    out.write_bytes(b"second!\n")  # written again by a later finalize
    a.add_output_file(FileRecord("file-o", "nas", "batch_output", "o", 8, 2), out)
    assert b.file_path("file-o").read_bytes() == b"second!\n"
    b.delete_file("file-1")
    assert a.get_file("file-1") is None


def test_stored_responses_are_shared_and_a_restart_fails_only_its_own_runs(
    dbs: tuple[Database, Database],
) -> None:
    a, b = PostgresResponseStore(dbs[0], "gw-a"), PostgresResponseStore(dbs[1], "gw-b")
    for store, rid in ((a, "resp_a"), (b, "resp_b")):
        store.put(StoredResponse(rid, "nas", now(), now() + 60, {"status": "in_progress"}, [], []))
    seen = b.get("resp_a", "nas", now())
    assert seen is not None
    assert seen.status == "in_progress"
    assert b.get("resp_a", "someone-else", now()) is None
    assert a.interrupted() == 1
    failed, running = b.get("resp_a", "nas", now()), a.get("resp_b", "nas", now())
    assert failed is not None
    assert failed.status == "failed"
    assert running is not None
    assert running.status == "in_progress"
    assert b.delete("resp_a", "nas") is True
    assert a.get("resp_a", "nas", now()) is None


def test_an_unreachable_database_is_a_503_and_the_store_heals_when_it_returns(
    postgres: Postgres, url: str, tmp_path: Path
) -> None:
    db = Database(url, timeout_s=1)
    store = PostgresStore(db, tmp_path, "gw-a", 60)
    store.add_batch(batch(1), None)
    postgres.stop()
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            store.get_batch("batch_test")
        assert caught.value.status == 503
        assert "unreachable" in caught.value.message
    finally:
        postgres.start()
    for _ in range(500):  # the pool reconnects in the background
        try:
            record = store.get_batch("batch_test")
            break
        except StoreUnavailableError:
            time.sleep(0.02)
    else:
        raise AssertionError("the store never reconnected")
    assert record is not None
    assert record.total == 1
    db.close()
