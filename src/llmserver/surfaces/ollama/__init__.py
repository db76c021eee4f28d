"""Ollama's native API (``/api/...``), as its ``docs/api.md`` and ``api/types.go`` define it."""
