"""Model engines behind one small protocol (``base``), one module per engine, found through the
``llmserver.backends`` entry-point registry."""
