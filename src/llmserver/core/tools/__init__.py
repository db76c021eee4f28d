"""Tool calling in the core: formats, the streaming parser and the per-request plan."""
