"""Model engines behind one small protocol (``base``) and small optional abilities
(``abilities``), one module per engine, found through the ``llmserver.backends`` entry points
(``llmserver.config.registry``)."""
