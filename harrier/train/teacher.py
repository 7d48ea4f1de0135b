"""Teacher embedders for distillation: online embeddings per step, or scores written into the records.

The teacher keeps its own prompts (EmbeddingGemma: ``task: search result | query: `` / ``title: none | text: ``);
the student's instruction prefixes are not shown to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from harrier.joblock import hold
from harrier.jsonl import JsonlError, parse_lines
from harrier.outputs import atomic_file
from harrier.train.config import TeacherConfig
from harrier.train.records import Record, parse_record

log = logging.getLogger(__name__)


class Teacher:
    """A frozen :class:`harrier.Embedder` used under ``inference_mode``."""

    def __init__(self, cfg: TeacherConfig, device: torch.device, dtype: str = "auto") -> None:
        from harrier import Embedder

        self.cfg = cfg
        self.embedder = Embedder.from_pretrained(cfg.path, device=device, dtype=dtype, max_length=cfg.max_length,
                                                 truncation="silent")
        self.embedder.model.requires_grad_(False)
        self.device = device
        log.info("teacher %s: dim %d", cfg.path, self.embedder.dim)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str], *, query: bool, prompt: str | None = None) -> torch.Tensor:
        """[N, E] float32 teacher embeddings on the training device (``prompt`` overrides the configured one)."""
        if prompt is None:
            prompt = self.cfg.query_prompt if query else self.cfg.document_prompt
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        out = self.embedder.encode(list(texts), prompt=prompt, batch_tokens=self.cfg.budget_tokens, progress=False)
        return torch.from_numpy(out).to(self.device)


def score_records(teacher: Teacher, records: Sequence[Record]) -> list[list[float]]:
    """Teacher cosine of each query with its first positive and each negative (``teacher_scores`` order)."""
    queries = teacher.embed([r.query for r in records], query=True)
    out = []
    docs = [d for r in records for d in (r.positives[0], *r.negatives)]
    doc_emb = teacher.embed(docs, query=False)
    start = 0
    for i, r in enumerate(records):
        n = 1 + len(r.negatives)
        sims = torch.nn.functional.cosine_similarity(queries[i : i + 1], doc_emb[start : start + n])
        out.append([round(float(s), 6) for s in sims])
        start += n
    return out


def _raw_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as f:
        try:
            yield from parse_lines(f)
        except JsonlError as err:
            raise ValueError(f"{path}:{err.line}: bad record: {err.error}") from err.error


def score_file(teacher: Teacher, src: Path, dst: Path, *, chunk: int = 256) -> int:
    """Copy ``src`` to ``dst`` (holding its job lock) adding ``teacher_scores`` to every pair record; returns the
    number scored."""
    n = 0
    with hold(dst, f"output {dst}", folder=False), atomic_file(dst, "w", encoding="utf-8") as out:
        buf: list[tuple[dict, Record]] = []

        def flush() -> None:
            nonlocal n
            if not buf:
                return
            for (obj, _), scores in zip(buf, score_records(teacher, [r for _, r in buf]), strict=True):
                obj["teacher_scores"] = scores
                out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += len(buf)
            buf.clear()

        for number, obj in _raw_lines(src):
            try:
                rec = parse_record({k: v for k, v in obj.items() if k != "teacher_scores"})
            except ValueError as err:
                raise ValueError(f"{src}:{number}: bad record: {err}") from err
            if rec.text_only:
                raise ValueError(f"{src}:{number}: plain-text records have nothing to score")
            buf.append((obj, rec))
            if len(buf) >= chunk:
                flush()
        flush()
    return n


def cosine_top_k(q: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` most similar rows of ``c`` for each row of ``q`` (best first)."""
    sims = q @ c.T
    k = min(k, c.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)
