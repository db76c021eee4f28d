"""The SQLite store: a line that runs twice around a restart is counted once; finalizing twice
gives the same files."""

from __future__ import annotations

from pathlib import Path

from llmserver.jobs.records import BatchRecord, LineOutcome, NewBatch
from llmserver.jobs.sqlite_store import SQLiteStore
from llmserver.jobs.store import now


def batch(lines: int) -> NewBatch:
    record = BatchRecord(
        id="batch_test",
        owner="nas",
        caller={"name": "nas"},
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        completion_window="24h",
        status="in_progress",
        metadata=None,
        errors=None,
        model=None,
        output_file_id=None,
        error_file_id=None,
        total=lines,
        completed=0,
        failed=0,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        created_at=now(),
        expires_at=now() + 60,
    )
    return NewBatch(record, [(i + 1, f"c{i}", "{}") for i in range(lines)])


def ok(n: int) -> LineOutcome:
    return LineOutcome(
        True, {"id": f"r{n}", "response": {"status_code": 200}, "error": None}, "m", 3, 2
    )


def test_a_line_claimed_again_after_a_restart_is_written_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    store.add_batch(batch(3), None)
    [first] = store.claim("batch_test", 1)
    store.recover()  # the process died while the line ran: its claim is void
    [again] = store.claim("batch_test", 1)
    assert again.line_no == first.line_no
    assert again.claim != first.claim
    assert store.finish_line(again, ok(1)) is True
    assert store.finish_line(first, ok(1)) is False  # the first run finishing late counts nothing
    record = store.get_batch("batch_test")
    assert record is not None
    assert (record.completed, record.prompt_tokens, record.completion_tokens) == (1, 3, 2)
    rest = store.claim("batch_test", 10)
    assert [line.line_no for line in rest] == [2, 3]  # in input order, the done one not again
    assert store.claim("batch_test", 10) == []  # claimed lines are not handed out twice


def test_unfinished_lines_end_with_the_outcome_and_count_as_failed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    store.add_batch(batch(4), None)
    lines = store.claim("batch_test", 2)
    assert store.finish_line(lines[0], ok(1))
    ended = store.end_unfinished(
        "batch_test", LineOutcome(False, {"response": None, "error": {"code": "batch_cancelled"}})
    )
    assert ended == 3
    assert store.finish_line(lines[1], ok(2)) is False  # aborted, then finishing: too late
    record = store.get_batch("batch_test")
    assert record is not None
    assert (record.completed, record.failed) == (1, 3)
    results = list(store.results("batch_test"))
    assert [(r.line_no, r.ok) for r in results] == [(1, True), (2, False), (3, False), (4, False)]
    assert store.unfinished("batch_test") == 0
