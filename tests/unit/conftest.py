"""Unit-test fixtures: the app on the fake backend, in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from support import fake_model, fake_settings, open_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The app serving one fake model called ``fake`` (alias ``f``)."""
    with open_client(fake_settings(fake_model("fake", aliases=["f"]))) as c:
        yield c
