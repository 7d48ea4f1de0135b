"""Request and response bodies: OpenAI ``/v1/embeddings`` and TEI's routes, field names and shapes as theirs,
plus harrier's per-request prompt fields (``prompt_name``, ``instruction``, ``task``; at most one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

# One text, several texts, one token-id sequence, several token-id sequences (OpenAI and TEI both take these).
# Strict: JSON true/false are not token ids 1/0, and "64" is not a number of dimensions.
EmbedInput = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class PromptFields(BaseModel):
    """harrier's extension: how a query gets its instruction (documents send none)."""

    model_config = ConfigDict(extra="ignore")

    prompt_name: str | None = Field(None, description="a named prompt of the checkpoint (GET /info lists them)")
    instruction: str | None = Field(None, description="one-sentence task, 'Instruct: {instruction}\\nQuery: '")
    task: str | None = Field(None, description="an MTEB(Multilingual, v2) task name: mteb's exact instruction")

    @model_validator(mode="after")
    def _one_prompt(self):
        given = [k for k in ("prompt_name", "instruction", "task") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of prompt_name, instruction, task (got {', '.join(given)})")
        return self


class EmbeddingRequest(PromptFields):
    """OpenAI ``POST /v1/embeddings``."""

    input: EmbedInput
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, description="truncate to this many dimensions, then re-normalise")
    user: str | None = None
    truncate: bool | None = Field(None, description="false: over-long input is an error (default: cut it)")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "harrier"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbedRequest(PromptFields):
    """TEI ``POST /embed``."""

    inputs: EmbedInput
    normalize: bool = True
    truncate: bool | None = None
    truncation_direction: Literal["Right", "right", "Left", "left"] = "Right"
    dimensions: StrictInt | None = None


class SimilarityInputs(BaseModel):
    source_sentence: str
    sentences: list[str]


class SimilarityRequest(PromptFields):
    """TEI ``POST /similarity``; the prompt applies to ``source_sentence`` only (a query against documents)."""

    inputs: SimilarityInputs
    truncate: bool | None = None
    truncation_direction: Literal["Right", "right", "Left", "left"] = "Right"


class TokenizeRequest(PromptFields):
    """TEI ``POST /tokenize``."""

    inputs: str | list[str]
    add_special_tokens: bool = True


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


class TEIError(BaseModel):
    error: str
    error_type: str
