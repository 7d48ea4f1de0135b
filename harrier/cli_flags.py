"""The model and prompt flags every ``harrier`` subcommand that loads a model shares (``encode``, ``similarity``,
``corpus encode``, ``search``): one definition, imported by each capability's CLI."""

from __future__ import annotations

import argparse

from harrier.loading import DTYPE_NAMES
from harrier.tokenize import TRUNCATION_POLICIES

TRUNCATION_HELP = "what to do with texts over --max-length (they are cut, keeping special tokens)"


def model_flags(p: argparse.ArgumentParser, *, truncation_help: str = TRUNCATION_HELP) -> None:
    p.add_argument("--model", required=True, help="hub id, local directory (HF / Sentence-Transformers layout) "
                   "or .gguf file")
    p.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="compute dtype (int8: int8 linear layers)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on long jobs)")
    p.add_argument("--no-prefix-cache", action="store_true", help="recompute each prompt for every text (the "
                   "uncached path, for A/B runs; the cache is exact and on by default where it applies)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per text incl. special tokens (at most "
                   "the model's positions unless --allow-over-positions)")
    p.add_argument("--allow-over-positions", action="store_true", help="accept a --max-length above the model's "
                   "position embeddings (runs, with a warning: the model was not trained on those positions)")
    p.add_argument("--truncation", default="warn", choices=TRUNCATION_POLICIES, help=truncation_help)


def prompt_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompt-name", help="a named prompt of the checkpoint (see harrier info)")
    g.add_argument("--instruction", help="one-sentence task: 'Instruct: {instruction}\\nQuery: '")
    g.add_argument("--task", help="an MTEB(Multilingual, v2) task name (mteb's exact instruction string)")
    g.add_argument("--prompt", help="a literal prefix")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="token budget per forward batch (default 4096 on CPU, 16384 on CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
