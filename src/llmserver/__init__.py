"""llmserver: a self-hosted, OpenAI-compatible LLM API server."""

__version__ = "0.1.0"
