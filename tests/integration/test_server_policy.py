"""Policy holes that are about the server process itself, tried on real servers: a key created
while the server runs, forwarding headers from a local peer, and upstream usage that lies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import fake_model, run_server
from support.mock_upstream import reporting, serve

pytestmark = pytest.mark.integration


def _until(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_first_key_created_while_running_turns_authentication_on(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    config = {"models": [fake_model()]}
    with run_server(tmp_path, config, env={"LLMSERVER_KEYS_FILE": str(keys)}) as server:
        assert httpx.get(f"{server.base_url}/models").status_code == 200
        created = subprocess.run(
            [sys.executable, "-m", "llmserver", "keys", "create", "--name", "late",
             "--keys-file", str(keys)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        key = created.stdout.splitlines()[0].strip()
        # the README promises "within a second"; allow the loaded CI machine some slack
        assert _until(lambda: httpx.get(f"{server.base_url}/models").status_code == 401, 3.0)
        body = httpx.get(f"{server.base_url}/models").json()
        assert body["error"]["code"] == "missing_api_key"
        ok = httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


def test_forwarded_for_from_a_local_peer_is_ignored_without_trusted_proxies(
    tmp_path: Path,
) -> None:
    config = {"models": [fake_model()], "allowed_ips": ["127.0.0.1"]}
    with run_server(tmp_path, config) as server:
        spoof = {"X-Forwarded-For": "203.0.113.9"}
        assert httpx.get(f"{server.base_url}/models", headers=spoof).status_code == 200
        outside = {**config, "allowed_ips": ["203.0.113.9"]}
    with run_server(tmp_path, outside, wait=False) as server:
        assert _until(lambda: _status(f"{server.url}/health") in (200, 403), 60)
        refused = httpx.get(f"{server.base_url}/models", headers=spoof)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "ip_not_allowed"
        log = server.log()
        assert "refused GET /v1/models from 127.0.0.1" in log
        assert "203.0.113.9" not in log.split("refused", 1)[1].splitlines()[0]


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path: Path) -> None:
    config = {
        "models": [fake_model()],
        "allowed_ips": ["203.0.113.9"],
        "trusted_proxies": ["127.0.0.1"],
    }
    with run_server(tmp_path, config, wait=False) as server:
        assert _until(lambda: _status(f"{server.url}/health") in (200, 403), 60)
        via_proxy = {"X-Forwarded-For": "203.0.113.9"}
        assert httpx.get(f"{server.base_url}/models", headers=via_proxy).status_code == 200
        assert httpx.get(f"{server.base_url}/models").status_code == 403


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_upstream_reporting_negative_usage_cannot_poison_metrics_or_usage(
    tmp_path: Path,
) -> None:
    with serve(reporting({"prompt_tokens": -40, "completion_tokens": -7})) as up:
        config = {"models": [{"id": "up", "backend": "upstream", "url": up.base_url}]}
        with run_server(tmp_path, config) as server:
            chat = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(3):
                resp = httpx.post(f"{server.base_url}/chat/completions", json=chat)
                assert resp.status_code == 200, resp.text
                usage = resp.json()["usage"]
                assert usage["completion_tokens"] == 1
                assert usage["prompt_tokens"] > 0
            metrics = httpx.get(f"{server.url}/metrics")
            assert metrics.status_code == 200
            completion = _metric(metrics.text, 'llmserver_completion_tokens_total{model="up"}')
            assert completion == "3.0"
            assert float(_metric(metrics.text, 'llmserver_prompt_tokens_total{model="up"}')) > 0
            assert "not credible" in server.log()
            assert "Traceback" not in server.log()


def _metric(text: str, name: str) -> str:
    return "\n".join(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name))


def test_infer_stream_client_leaving_while_queued_gives_up_its_place(tmp_path: Path) -> None:
    slow = fake_model(token_delay_s=0.2, max_concurrent=1, max_queue=4)
    with run_server(tmp_path, {"models": [slow]}) as server:
        body = {"query": "hello", "max_length": 12}

        def models() -> list[dict[str, Any]]:
            return list(httpx.get(server.url + "/").json()["models"])

        with httpx.Client(timeout=30) as holder:
            busy = threading.Thread(target=lambda: holder.post(f"{server.url}/infer", json=body))
            busy.start()
            assert _until(lambda: models()[0]["slots_in_use"] == 1)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{server.url}/infer/stream", json=body, timeout=0.5)
            # the stream's client left while it waited for the slot: its place is given up at
            # once, not when the slot frees (the holder still runs for about two seconds)
            assert _until(lambda: models()[0]["waiting"] == 0, 1.0)
            assert models()[0]["slots_in_use"] == 1
            busy.join()
        assert "499" in server.log()
