"""API keys, the allowlist and CORS, against the app on the fake backend."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.app import create_app
from llmserver.cli import main
from llmserver.config.settings import SettingsError
from llmserver.http.context import RequestContext, request_context
from llmserver.http.errors import ErrorShapes
from llmserver.http.middleware.auth import AuthMiddleware
from llmserver.observability.logs import AccessRecord
from llmserver.security.keys import KeyStore, create_key, read_keys, revoke_key
from support import fake_model, fake_settings, open_client


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    """A keys file with an admin key, a key for ``fake`` only, and a revoked key."""
    path = tmp_path / "keys.json"
    texts = {
        "admin": create_key(path, "admin", admin=True),
        "user": create_key(path, "user", models=["fake"], requests_per_minute=30),
        "gone": create_key(path, "gone"),
    }
    revoke_key(path, "gone")
    return {"path": path, **texts}


@pytest.fixture
def client(keys: dict[str, Any], caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    """Two fake models, ``fake`` and ``other``; keys required."""
    caplog.set_level(logging.DEBUG)
    settings = fake_settings(fake_model("fake"), fake_model("other"), keys_file=keys["path"])
    with open_client(settings) as c:
        yield c


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def _no_key_text(caplog: pytest.LogCaptureFixture, keys: dict[str, Any]) -> None:
    # the test's own HTTP client logs the URLs it requests; everything else is the server's
    server = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    for name in ("admin", "user", "gone"):
        assert keys[name] not in server
        assert keys[name][5:20] not in server


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("headers", "query", "code"),
    [
        ({}, "", "missing_api_key"),
        ({"Authorization": "Bearer llms-not-a-real-key"}, "", "invalid_api_key"),
        ({"x-api-key": "llms-not-a-real-key"}, "", "invalid_api_key"),
        ({"Authorization": "Basic {user}"}, "", "invalid_auth_scheme"),
        ({"Authorization": "{user}"}, "", "invalid_auth_scheme"),
        ({}, "?api_key={user}", "api_key_in_query"),
        ({"Authorization": "Bearer {gone}"}, "", "invalid_api_key"),
    ],
    ids=["no-key", "wrong-key", "wrong-x-api-key", "basic", "no-scheme", "query", "revoked"],
)
def test_refused_with_401(
    client: TestClient,
    keys: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    query: str,
    code: str,
) -> None:
    headers = {k: v.format(**keys) for k, v in headers.items()}
    resp = client.post("/v1/chat/completions" + query.format(**keys), json=CHAT, headers=headers)
    error = _error(resp, 401, code)
    assert error["type"] == "authentication_error"
    for name in ("admin", "user", "gone"):
        assert keys[name] not in resp.text
    assert "refused POST /v1/chat/completions" in caplog.text
    _no_key_text(caplog, keys)


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_good_key_in_either_header(
    client: TestClient, keys: dict[str, Any], caplog: pytest.LogCaptureFixture, header: str
) -> None:
    value = f"Bearer {keys['user']}" if header == "authorization" else keys["user"]
    resp = client.post("/v1/chat/completions", json=CHAT, headers={header: value})
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"]
    _no_key_text(caplog, keys)


def test_model_not_allowed_is_403_and_hidden(
    client: TestClient, keys: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    auth = _bearer(keys["user"])
    resp = client.post("/v1/chat/completions", json={**CHAT, "model": "other"}, headers=auth)
    error = _error(resp, 403, "model_not_allowed")
    assert error["param"] == "model"
    resp = client.post("/generate", json={"prompt": "hi", "model": "other"}, headers=auth)
    _error(resp, 403, "model_not_allowed")
    listed = [m["id"] for m in client.get("/v1/models", headers=auth).json()["data"]]
    assert listed == ["fake"]
    _error(client.get("/v1/models/other", headers=auth), 404, "model_not_found")
    admin_listed = client.get("/v1/models", headers=_bearer(keys["admin"])).json()["data"]
    assert [m["id"] for m in admin_listed] == ["fake", "other"]
    _no_key_text(caplog, keys)


def test_admin_endpoint_needs_admin_key(
    client: TestClient, keys: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    resp = client.get("/admin/whoami", headers=_bearer(keys["user"]))
    _error(resp, 403, "admin_required")
    _error(client.get("/admin/whoami"), 401, "missing_api_key")
    resp = client.get("/admin/whoami", headers=_bearer(keys["admin"]))
    assert resp.status_code == 200
    assert resp.json() == {"key": {"name": "admin", "admin": True, "models": None}}
    _no_key_text(caplog, keys)


def test_open_and_status_paths(client: TestClient, keys: dict[str, Any]) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    _error(client.get("/"), 401, "missing_api_key")
    assert client.get("/", headers=_bearer(keys["user"])).status_code == 200


def test_api_docs_open_without_a_key(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    # only those paths: a look-alike still needs a key
    _error(client.get("/docs-assets-extra"), 401, "missing_api_key")
    _error(client.get("/docsx"), 401, "missing_api_key")


def test_status_paths_open_when_configured(keys: dict[str, Any]) -> None:
    settings = fake_settings(keys_file=keys["path"], status_requires_key=False)
    with open_client(settings) as c:
        assert c.get("/").status_code == 200
        _error(c.post("/v1/chat/completions", json=CHAT), 401, "missing_api_key")


def test_revocation_applies_without_restart(
    client: TestClient, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llmserver.security.keys.RELOAD_INTERVAL_S", 0.0)
    assert client.get("/v1/models", headers=_bearer(keys["user"])).status_code == 200
    revoke_key(keys["path"], "user")
    _error(client.get("/v1/models", headers=_bearer(keys["user"])), 401, "invalid_api_key")


async def test_scope_gets_key_name_and_rate_limits(keys: dict[str, Any]) -> None:
    """The contracts with the access log and the rate limiter."""
    seen: list[RequestContext] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(request_context(scope))

    record = AccessRecord()
    auth = AuthMiddleware(
        app, KeyStore(keys["path"]), status_requires_key=True, shapes=ErrorShapes()
    )
    headers = [(b"authorization", f"Bearer {keys['user']}".encode())]
    scope: dict[str, Any] = {"type": "http", "path": "/v1/models", "headers": headers}
    request_context(scope).access = record
    await auth(scope, None, None)  # type: ignore[arg-type]
    assert record.key_name == "user"
    assert seen[-1].rate_limits == {"requests_per_minute": 30, "tokens_per_minute": None}
    scope["headers"] = [(b"x-api-key", keys["admin"].encode())]
    scope["state"] = {}
    request_context(scope).access = record
    await auth(scope, None, None)  # type: ignore[arg-type]
    assert record.key_name == "admin"
    assert seen[-1].rate_limits is None


def test_keys_file_holds_only_hashes(keys: dict[str, Any]) -> None:
    raw = keys["path"].read_text()
    for name in ("admin", "user", "gone"):
        assert keys[name] not in raw
    stored = json.loads(raw)["keys"]
    assert [k["name"] for k in stored] == ["admin", "user", "gone"]
    assert all(len(k["hash"]) == 64 for k in stored)
    assert keys["path"].stat().st_mode & 0o077 == 0


# -- the allowlist and X-Forwarded-For -------------------------------------------------------


def _peer_client(peer: str, **settings: Any) -> AbstractContextManager[TestClient]:
    return open_client(fake_settings(**settings), until=None, peer=peer)


def test_allowlist_refuses_other_addresses(tmp_path: Path) -> None:
    with _peer_client("192.168.1.20", allowed_ips=["10.0.0.0/8"], keys_file=tmp_path / "k") as c:
        _error(c.get("/v1/models"), 403, "ip_not_allowed")
    with _peer_client("10.9.8.7", allowed_ips=["10.0.0.0/8"], keys_file=tmp_path / "k") as c:
        assert c.get("/v1/models").status_code == 200


def test_spoofed_forwarded_for_from_untrusted_peer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = {"allowed_ips": ["10.0.0.5"], "trusted_proxies": ["172.16.0.1"]}
    with _peer_client("192.168.1.20", keys_file=tmp_path / "k", **settings) as c:
        resp = c.get("/v1/models", headers={"X-Forwarded-For": "10.0.0.5"})
        _error(resp, 403, "ip_not_allowed")
        assert "from 192.168.1.20" in caplog.text


def test_forwarded_for_from_trusted_proxy_read_right_to_left(tmp_path: Path) -> None:
    settings = {"allowed_ips": ["10.0.0.5"], "trusted_proxies": ["172.16.0.0/16"]}
    with _peer_client("172.16.0.1", keys_file=tmp_path / "k", **settings) as c:
        ok = {"X-Forwarded-For": "1.2.3.4, 10.0.0.5, 172.16.0.9"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        # the client wrote 10.0.0.5 itself; the proxy appended the real address
        spoofed = {"X-Forwarded-For": "10.0.0.5, 203.0.113.7"}
        _error(c.get("/v1/models", headers=spoofed), 403, "ip_not_allowed")
        _error(c.get("/v1/models"), 403, "ip_not_allowed")  # the proxy itself is not allowed


def test_cors_preflight_and_headers(keys: dict[str, Any]) -> None:
    settings = fake_settings(keys_file=keys["path"], cors_origins=["https://app.example"])
    with open_client(settings) as c:
        preflight = c.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = c.get("/v1/models", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# -- safe by default -------------------------------------------------------------------------


def test_lan_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="llmserver keys create --name"):
        create_app(fake_settings(host="0.0.0.0", keys_file=tmp_path / "none.json"))
    create_app(fake_settings(host="0.0.0.0", keys_file=tmp_path / "n.json", insecure_no_auth=True))
    create_app(fake_settings(host="::1", keys_file=tmp_path / "none.json"))
    path = tmp_path / "keys.json"
    create_key(path, "app")
    create_app(fake_settings(host="0.0.0.0", keys_file=path))


def test_serve_command_says_how_to_create_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--keys-file", str(tmp_path / "none.json")])
    assert code == 2
    assert "llmserver keys create --name" in capsys.readouterr().err


def test_keys_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "keys.json")
    args = ["keys", "create", "--keys-file", path, "--name", "nas", "--models", "a,b"]
    assert main([*args, "--rpm", "60", "--admin"]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    assert key.startswith("llms-")
    assert len(key) > 40
    stored = read_keys(Path(path))[0]
    assert (stored.name, stored.models, stored.requests_per_minute, stored.admin) == (
        "nas",
        ["a", "b"],
        60,
        True,
    )
    assert main(["keys", "list", "--keys-file", path]) == 0
    listing = capsys.readouterr().out
    assert "nas" in listing
    assert key not in listing
    assert main(["keys", "create", "--keys-file", path, "--name", "nas"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "revoke", "nas", "--keys-file", path]) == 0
    assert read_keys(Path(path))[0].revoked
    assert main(["keys", "revoke", "--keys-file", path, "nobody"]) == 2
