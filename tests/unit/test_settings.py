"""Settings loading: file, environment and flags; clear errors naming the key or path."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.cli import build_parser, settings_from_args
from llmserver.config.model_configs import FakeConfig, LlamaCppConfig
from llmserver.config.settings import (
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_MODEL_ID,
    SettingsError,
    load_settings,
)
from llmserver.config.settings_doc import BEGIN, END, markdown
from support.cli import serve_help

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_serve_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    ids = [m.id for m in settings.models]
    # the chat model first (the default); the embedding model too when its extra is installed
    assert ids in ([DEFAULT_MODEL_ID], [DEFAULT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID])
    model = settings.models[0]
    assert isinstance(model, LlamaCppConfig)
    assert model.path.name.endswith(".gguf")


def test_file_env_and_flags_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "port: 9001\nlog_level: warning\nmax_n: 3\n")
    monkeypatch.setenv("LLMSERVER_PORT", "9002")
    settings = load_settings({"config": cfg})
    assert settings.port == 9002  # env over file
    assert settings.log_level == "warning"  # file over default
    args = build_parser().parse_args(["serve", "--config", str(cfg), "--port", "9003"])
    assert settings_from_args(args).port == 9003  # flag over env


def test_plain_host_and_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("HOST", "0.0.0.0")
    settings = load_settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 8123)


def test_models_are_typed_by_backend(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        "models:\n  - id: a\n    backend: fake\n    aliases: [x]\n    reply: hi\n"
        "    defaults: {temperature: 0.1}\n",
    )
    model = load_settings({"config": cfg}).models[0]
    assert isinstance(model, FakeConfig)
    assert model.reply == "hi"
    assert model.defaults.temperature == 0.1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("colour: blue\n", "colour"),
        ("port: lots\n", "port"),
        ("models:\n  - id: a\n    backend: fake\n    bogus: 1\n", "models[0].bogus"),
        ("models:\n  - id: a\n    backend: nope\n", "unknown backend 'nope'"),
        ("models:\n  - id: a\n    backend: llamacpp\n    path: /no/such.gguf\n", "/no/such.gguf"),
        ("models:\n  - id: a\n    backend: fake\n  - id: a\n    backend: fake\n", "used twice"),
        ("models:\n  - id: a\n    backend: fake\n    defaults: {temperature: 9}\n", "temperature"),
        ("- just\n- a list\n", "must contain a mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"config": write(tmp_path, text)})
    assert named in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings({"config": tmp_path / "absent.yaml"})


def test_help_comes_from_field_descriptions() -> None:
    help_text = serve_help()
    assert "--max-n" in help_text
    assert "Largest `n`" in help_text


def test_settings_reference_is_current() -> None:
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == markdown(), "docs/settings.md is stale: run `llmserver settings`"
