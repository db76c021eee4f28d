"""``llmserver bench``: a load generator for any OpenAI-compatible endpoint.

``add_arguments`` and ``run`` are the entry points the ``llmserver`` CLI wires in; importing
this package does not import aiohttp or matplotlib.
"""

from llmserver.bench.command import add_arguments, run

__all__ = ["add_arguments", "run"]
