"""Model aliases, one per named prompt: ``<served-name>@<prompt name>`` (e.g. ``harrier-270m@web_search_query``).

A client that can only name a model (an unmodified OpenAI-compatible client) gets instructed queries by naming the
alias, and raw documents by naming the plain served name. ``GET /v1/models`` lists them all.
"""

from __future__ import annotations

from harrier.serve.errors import APIError
from harrier.serve.runtime import PromptChoice, Runtime

SEP = "@"


def model_ids(runtime: Runtime) -> list[str]:
    """The served name, then one alias per named prompt (sorted)."""
    prompts = runtime.description.get("prompts") or {}
    return [runtime.model_id, *(f"{runtime.model_id}{SEP}{name}" for name in sorted(prompts))]


def alias_prompt(model: str | None, runtime: Runtime) -> str | None:
    """The prompt name a request's ``model`` selects: None for the served name (or no ``model``); 404 for a name
    this server does not serve."""
    if model is None or model == runtime.model_id:
        return None
    prompts = runtime.description.get("prompts") or {}
    base, sep, name = model.rpartition(SEP)
    if sep and base == runtime.model_id and name in prompts:
        return name
    listed = ", ".join(model_ids(runtime)[:8]) + (" ..." if len(prompts) > 7 else "")
    raise APIError(404, f"model {model!r} is not served here; this server serves {runtime.model_id!r} and one alias "
                        f"per named prompt: {listed}", "model")


def with_alias(choice: PromptChoice, alias: str | None, body) -> PromptChoice:
    """The request's prompt once its model alias is applied: the alias's prompt, unless the body also sends a
    prompt field (422: two prompts for one request); no alias: ``choice`` unchanged."""
    if alias is None:
        return choice
    sent = [k for k in ("prompt_name", "instruction", "task") if getattr(body, k, None) is not None]
    if sent:
        plain = body.model.rpartition(SEP)[0]
        raise APIError(422, f"model alias {body.model!r} selects prompt {alias!r}; do not also send {sent[0]} "
                            f"(name the plain model {plain!r} to choose the prompt per request)", sent[0])
    return PromptChoice(prompt_name=alias)
