"""llama-server's code-completion endpoint, ``POST /infill``, as editor plugins (llama.vscode,
llama.vim) send it."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.llamaserver import infill


def surface(settings: Settings) -> Surface:
    """``/infill``, answering errors in OpenAI's shape (llama-server's is the same)."""
    return Surface("llamaserver", (infill.router,))
