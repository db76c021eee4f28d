"""Stored responses of the Responses API in the shared PostgreSQL (issue 29): a response
created on one gateway is retrieved, continued (``previous_response_id``) and deleted on the
other (in-process apps, the fake model, one real throw-away PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from support import fake_settings, open_client
from support.state_servers import Postgres

RESPONSES = "/v1/responses"


def test_a_response_stored_on_one_gateway_is_read_continued_and_deleted_on_the_other(
    postgres: Postgres, tmp_path: Path
) -> None:
    settings = fake_settings(store=postgres.database(), data_dir=tmp_path)
    with open_client(settings) as a, open_client(settings) as b:
        created = a.post(RESPONSES, json={"model": "fake", "input": "hello there"})
        assert created.status_code == 200
        first = created.json()
        seen = b.get(f"{RESPONSES}/{first['id']}")
        assert seen.status_code == 200
        assert seen.json()["output"] == first["output"]
        follow = b.post(
            RESPONSES,
            json={"model": "fake", "input": "and then?", "previous_response_id": first["id"]},
        )
        assert follow.status_code == 200
        items = a.get(f"{RESPONSES}/{follow.json()['id']}/input_items").json()["data"]
        assert items
        assert b.delete(f"{RESPONSES}/{first['id']}").status_code == 200
        assert a.get(f"{RESPONSES}/{first['id']}").status_code == 404
