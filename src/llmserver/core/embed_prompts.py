"""Embedding prompts: the text put before an input so that models trained with one (e5's
``query: `` / ``passage: ``, bge's query instruction, gte, nomic) embed it as they were trained.

A model's ``prompts`` config names them; a request picks one by ``prompt_name``
(sentence-transformers' word) or by ``input_type`` (Cohere's ``search_query`` /
``search_document``, Voyage's ``query`` / ``document``), else the model's
``default_prompt_name`` applies. A rerank on an embedding model uses the ``query`` prompt for the
query and the ``document`` prompt (or ``passage``) for the documents.
"""

from __future__ import annotations

from llmserver.config.model_configs import ModelConfig
from llmserver.errors import InvalidRequestError

#: ``input_type`` values that mean a search query, and those that mean a stored document
QUERY_TYPES = frozenset({"query", "search_query", "retrieval.query", "retrieval_query"})
DOCUMENT_TYPES = frozenset(
    {"document", "search_document", "passage", "retrieval.passage", "retrieval_document"}
)
#: other known kinds of input (Cohere's, Jina's): no prompt unless the model names one
OTHER_TYPES = frozenset({"classification", "clustering", "text-matching", "separation"})


def query_prompt(config: ModelConfig) -> str:
    """The model's prompt for a search query ('' when it has none)."""
    return config.prompts.get("query", "")


def document_prompt(config: ModelConfig) -> str:
    """The model's prompt for a document (``document``, else ``passage``; '' when none)."""
    return config.prompts.get("document", config.prompts.get("passage", ""))


def embedding_prompt(config: ModelConfig, input_type: str | None, prompt_name: str | None) -> str:
    """The prompt an embedding request gets ('' for none); 400 for a prompt the model lacks."""
    if input_type is not None and prompt_name is not None:
        raise InvalidRequestError("give input_type or prompt_name, not both", param="prompt_name")
    if prompt_name is not None:
        if prompt_name not in config.prompts:
            known = ", ".join(sorted(config.prompts)) or "none"
            raise InvalidRequestError(
                f"model '{config.id}' has no prompt named '{prompt_name}' (its prompts: {known})",
                param="prompt_name",
            )
        return config.prompts[prompt_name]
    if input_type is not None:
        if input_type in QUERY_TYPES:
            return query_prompt(config)
        if input_type in DOCUMENT_TYPES:
            return document_prompt(config)
        if input_type in config.prompts:
            return config.prompts[input_type]
        if input_type in OTHER_TYPES:
            return ""
        raise InvalidRequestError(
            f"unknown input_type '{input_type}': use search_query, search_document, query, "
            "document, classification, clustering or one of the model's prompt names",
            param="input_type",
        )
    if config.default_prompt_name is not None:
        return config.prompts[config.default_prompt_name]
    return ""
