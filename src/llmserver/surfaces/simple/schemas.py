"""The simple endpoints' request schemas, in the documents' names.

``/infer`` and ``/infer/stream`` take the module rules' request (seed 004); ``/generate`` and
``/chat`` the daemon document's (seed 002). A sampling field left out (or null) takes the
documents' default, which the settings may change (``infer_*``, ``generate_*``), so the
defaults are filled in by :mod:`.translate` rather than declared here. Unknown fields are
accepted (clients send them) and ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

#: the module rules' limit on a query
MAX_QUERY = 4096


class InferRequest(BaseModel):
    """``POST /infer`` and ``/infer/stream``."""

    model_config = ConfigDict(extra="allow")

    query: str = Field(
        min_length=1, max_length=MAX_QUERY, description="The text to answer, 1 to 4096 characters."
    )
    max_length: StrictInt | None = Field(
        None, ge=1, description="Tokens to generate at most; default 100 (`infer_max_length`)."
    )
    temperature: StrictFloat | None = Field(
        None, ge=0, le=2, description="Sampling temperature; default 0.7 (`infer_temperature`)."
    )
    top_p: StrictFloat | None = Field(
        None, gt=0, le=1, description="Nucleus sampling threshold; default 1.0 (`infer_top_p`)."
    )
    num_return_sequences: StrictInt = Field(
        1, ge=1, description="Texts to generate (`max_n` at most)."
    )


class GenerateRequest(BaseModel):
    """``POST /generate`` and ``/chat``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    prompt: str = Field(min_length=1, description="The prompt to continue or answer.")
    max_tokens: StrictInt | None = Field(
        None, ge=1, description="Tokens to generate at most; default 256 (`generate_max_tokens`)."
    )
    temperature: StrictFloat | None = Field(
        None,
        ge=0,
        le=2,
        description="Sampling temperature; default 0.8 (`generate_temperature`).",
    )
    top_k: StrictInt | None = Field(
        None, ge=0, description="Top-k sampling; default 50 (`generate_top_k`)."
    )
    model: str | None = Field(
        None, description="Server extra: the model id, alias or role; default the default model."
    )
