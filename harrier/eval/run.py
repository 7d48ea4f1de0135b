"""``evaluate()``: embed each selected task's texts with an ``Encoder`` and score them with mteb's protocols."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from harrier.eval import metrics
from harrier.eval.data import BitextData, ClassificationData, ClusteringData, PairData, RetrievalData, TaskData
from harrier.eval.encoders import Encoder, PromptPolicy, choose_policy
from harrier.eval.protocols import (
    ClassificationProtocol,
    ClusteringProtocol,
    LegacyClusteringProtocol,
    MultilabelClassificationProtocol,
    RetrievalProtocol,
    STSProtocol,
)
from harrier.eval.results import TaskResult, subset_entry
from harrier.eval.tasks import RANKING_TYPES, Selection, TaskSpec
from harrier.outputs import OutputError

log = logging.getLogger(__name__)


DATA_ENV = "HARRIER_DATA"
NO_DATA_ROOT = (f"no data root: pass --data-root DIR (library: data_root=DIR) or set {DATA_ENV}=DIR, the folder "
                "holding the raw datasets (docs/evaluation.md lists them)")


def default_data_root() -> Path | None:
    """The data root when none is passed: ``$HARRIER_DATA`` when set, else ``../shared/data`` relative to the
    current directory when that exists (a convenience for a checkout next to the project's shared folder)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    candidate = Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def resolve_data_root(data_root: str | Path | None) -> Path:
    """The data root to read (``data_root``, else ``default_data_root()``), or a ValueError saying what to pass."""
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None:
        raise ValueError(NO_DATA_ROOT)
    if not root.is_dir():
        given = f"data root {root}" if data_root is not None else f"{DATA_ENV}={root}"
        raise ValueError(f"{given} does not exist or is not a directory; pass --data-root DIR or set {DATA_ENV}")
    return root


def _pairs(enc: Encoder, task: TaskSpec, data: PairData, policy: PromptPolicy) -> Mapping[str, object]:
    prompt = policy.prompt(task, None)
    e1, e2 = enc.encode(data.text1, prompt=prompt), enc.encode(data.text2, prompt=prompt)
    if isinstance(task.protocol, STSProtocol):
        return metrics.sts_scores(e1, e2, data.scores, min_score=task.protocol.min_score,
                                  max_score=task.protocol.max_score)
    return metrics.pair_classification_scores(e1, e2, data.labels)


def _bitext(enc: Encoder, task: TaskSpec, data: BitextData, policy: PromptPolicy) -> Mapping[str, object]:
    prompt = policy.prompt(task, None)
    return metrics.bitext_scores(enc.encode(data.text1, prompt=prompt), enc.encode(data.text2, prompt=prompt))


def _embed_experiments(enc: Encoder, texts: Sequence[str], experiments: list[list[int]], prompt: str | None
                       ) -> np.ndarray:
    """Rows of ``texts`` that some experiment selects, embedded once (the other rows stay zeros: never read)."""
    union = sorted(set().union(*experiments))
    union_emb = enc.encode([texts[i] for i in union], prompt=prompt)
    train_emb = np.zeros((len(texts), union_emb.shape[1]), dtype=np.float32)
    train_emb[union] = union_emb
    return train_emb


def _classification(enc: Encoder, task: TaskSpec, data: ClassificationData, policy: PromptPolicy,
                    protocol: ClassificationProtocol) -> Mapping[str, object]:
    prompt = policy.prompt(task, None)
    experiments = metrics.undersample_experiments(data.train_labels, n_experiments=protocol.n_experiments,
                                                  samples_per_label=protocol.samples_per_label)
    train_emb = _embed_experiments(enc, data.train_texts, experiments, prompt)
    test_emb = enc.encode(data.texts, prompt=prompt)
    return metrics.classification_scores(train_emb, data.train_labels, experiments, test_emb, data.labels)


def _multilabel(enc: Encoder, task: TaskSpec, data: ClassificationData, policy: PromptPolicy,
                protocol: MultilabelClassificationProtocol, rng: np.random.Generator | None) -> Mapping[str, object]:
    """``rng``: the task's shared generator (None: a fresh one, as the task's first split and subset get)."""
    prompt = policy.prompt(task, None)
    rng = rng if rng is not None else np.random.default_rng(metrics.SEED)
    experiments = metrics.multilabel_undersample(data.train_labels, rng, n_experiments=protocol.n_experiments,
                                                 samples_per_label=protocol.samples_per_label)
    train_emb = _embed_experiments(enc, data.train_texts, experiments, prompt)
    test_emb = enc.encode(data.texts, prompt=prompt)
    return metrics.multilabel_scores(train_emb, data.train_labels, experiments, test_emb, data.labels,
                                     n_neighbors=protocol.n_neighbors)


def _clustering(enc: Encoder, task: TaskSpec, data: ClusteringData, policy: PromptPolicy,
                protocol: ClusteringProtocol, rng: random.Random | None) -> Mapping[str, object]:
    """v2 clustering; ``rng`` is the task's shared generator (None: a fresh one, as the task's first subset gets)."""
    rng = rng if rng is not None else random.Random(metrics.SEED)
    picked = metrics.clustering_sample(rng, len(data.texts), protocol.documents(len(data.texts)))
    emb = enc.encode([data.texts[i] for i in picked], prompt=policy.prompt(task, None))
    return metrics.clustering_scores(emb, [data.labels[i] for i in picked], rng, n_clusters=protocol.n_clusters,
                                     cluster_size=protocol.cluster_size, batch_size=protocol.batch_size,
                                     max_depth=protocol.max_depth)


def _retrieval(enc: Encoder, task: TaskSpec, data: RetrievalData, policy: PromptPolicy) -> Mapping[str, object]:
    qids, dids = list(data.queries), list(data.corpus)
    q_emb = enc.encode([data.queries[q] for q in qids], prompt=policy.prompt(task, "query"))
    d_emb = enc.encode([data.corpus[d] for d in dids], prompt=policy.prompt(task, "document"))
    candidates = None
    if data.candidates is not None:
        pos = {d: i for i, d in enumerate(dids)}
        candidates = [[pos[d] for d in data.candidates.get(q, ())] for q in qids]
    protocol = task.protocol
    assert isinstance(protocol, RetrievalProtocol)
    ranked = metrics.rank_documents(q_emb, d_emb, dids, top_k=max(protocol.k_values), candidates=candidates)
    run = dict(zip(qids, ranked, strict=True))
    if protocol.ignore_identical_ids:  # mteb drops them from the top-k, after the search
        run = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    if protocol.skip_first_result:
        run = {q: dict(sorted(docs.items(), key=lambda x: x[1], reverse=True)[1:]) for q, docs in run.items()}
    scores: dict[str, object] = dict(metrics.retrieval_scores(run, data.qrels, protocol.k_values))
    if data.changed is not None:  # mteb drops queries without relevant documents before it ranks
        scored = {q: docs for q, docs in run.items() if data.qrels.get(q)}
        scores.update(metrics.instruction_scores(scored, data.qrels, data.changed, protocol.k_values))
    scores["main_score"] = scores[task.main_score]
    return scores


def score_subset(enc: Encoder, task: TaskSpec, data: TaskData, policy: PromptPolicy,
                 rng: random.Random | np.random.Generator | None = None) -> Mapping[str, object]:
    """Scores of one loaded subset/split (mteb's metric names, ``main_score`` included); ``rng``: the task's
    shared generator where mteb shares one (see ``task_rng``)."""
    protocol = task.protocol
    if isinstance(data, PairData):
        return _pairs(enc, task, data, policy)
    if isinstance(data, BitextData):
        return _bitext(enc, task, data, policy)
    if isinstance(data, ClassificationData) and isinstance(protocol, ClassificationProtocol):
        return _classification(enc, task, data, policy, protocol)
    if isinstance(data, ClassificationData) and isinstance(protocol, MultilabelClassificationProtocol):
        assert rng is None or isinstance(rng, np.random.Generator)
        return _multilabel(enc, task, data, policy, protocol, rng)
    if isinstance(data, ClusteringData) and isinstance(protocol, LegacyClusteringProtocol):
        return metrics.clustering_legacy_scores(enc.encode(data.texts, prompt=policy.prompt(task, None)),
                                                data.labels, n_sets=protocol.sets)
    if isinstance(data, ClusteringData) and isinstance(protocol, ClusteringProtocol):
        assert rng is None or isinstance(rng, random.Random)
        return _clustering(enc, task, data, policy, protocol, rng)
    if isinstance(data, RetrievalData):
        return _retrieval(enc, task, data, policy)
    raise TypeError(f"unsupported task data {type(data).__name__} with protocol {type(protocol).__name__}")


def _multilabel_rng(task: TaskSpec, root: Path, subset: str, split: str) -> np.random.Generator | None:
    """mteb shares one ``np.random.default_rng(42)`` across a multilabel task's splits and subsets (splits outer,
    each split's subsets in the task's order): replay the undersampling of those before (``subset``, ``split``)."""
    protocol = task.protocol
    if not isinstance(protocol, MultilabelClassificationProtocol):
        return None
    rng = np.random.default_rng(metrics.SEED)
    jobs = [(sp, s) for sp in task.splits for s in task.subsets]
    for previous_split, previous in jobs[: jobs.index((split, subset))]:
        data = task.load(root, previous, previous_split)
        if not isinstance(data, ClassificationData):
            raise TypeError(f"{task.name} {previous}: a multilabel task loaded {type(data).__name__}")
        metrics.multilabel_undersample(data.train_labels, rng, n_experiments=protocol.n_experiments,
                                       samples_per_label=protocol.samples_per_label)
    return rng


def task_rng(task: TaskSpec, root: Path, subset: str, split: str) -> random.Random | np.random.Generator | None:
    """The generator mteb would hold when it reaches (``subset``, ``split``) of a task that shares one across its
    subsets (v2 clustering, multilabel classification); None for the others."""
    return _clustering_rng(task, root, subset) or _multilabel_rng(task, root, subset, split)


def _clustering_rng(task: TaskSpec, root: Path, subset: str) -> random.Random | None:
    """mteb shares one ``random.Random(42)`` across a v2 clustering task's subsets (in the task's order): replay
    the draws of the subsets before ``subset`` so its score is the one a full mteb run gives."""
    protocol = task.protocol
    if not isinstance(protocol, ClusteringProtocol):
        return None
    rng = random.Random(metrics.SEED)
    for previous in task.subsets[: task.subsets.index(subset)]:
        data = task.load(root, previous, task.splits[0])
        if not isinstance(data, ClusteringData):
            raise TypeError(f"{task.name} {previous}: a clustering task loaded {type(data).__name__}")
        metrics.skip_clustering_draws(rng, data.labels, protocol.documents(len(data.texts)),
                                      n_clusters=protocol.n_clusters, cluster_size=protocol.cluster_size,
                                      max_depth=protocol.max_depth)
    return rng


def prompts_used(task: TaskSpec, policy: PromptPolicy) -> dict[str, str | None]:
    """The literal prompts of a task, by input kind (recorded in the results JSON)."""
    if task.type in RANKING_TYPES:
        return {"query": policy.prompt(task, "query"), "document": policy.prompt(task, "document")}
    return {"all": policy.prompt(task, None)}


Reporter = Callable[[str], None]


def _main_score(entry: Mapping[str, object]) -> str:
    value = entry["main_score"]
    return "main score " + (f"{100 * value:.2f}" if isinstance(value, int | float) else "n/a")  # None: NaN


def evaluate_selection(enc: Encoder, sel: Selection, root: Path, policy: PromptPolicy, progress: bool = False,
                       report: Reporter | None = None, tag: str = "") -> TaskResult:
    """Evaluate one task's chosen subsets and splits; ``report`` gets a line when the task starts and ends and when
    each subset ends (tasks with more than one), prefixed with ``tag``."""
    task = sel.task
    say = report or log.info
    start = time.monotonic()
    scores: dict[str, list[dict[str, object]]] = {}
    jobs = [(split, subset) for split in sel.splits for subset in sel.subsets]
    many = len(jobs) > 1
    say(f"{tag}{task.name} started" + (f" ({len(jobs)} subsets)" if many else ""))
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=task.name, unit="subset")
    for split, subset in jobs:
        log.debug("%s %s/%s", task.name, subset, split)
        begun = time.monotonic()
        data = task.load(root, subset, split)
        result = score_subset(enc, task, data, policy, task_rng(task, root, subset, split))
        entry = subset_entry(task, subset, result)
        scores.setdefault(split, []).append(entry)
        if many:
            where = subset if len(sel.splits) == 1 else f"{subset}, {split}"
            say(f"{tag}{task.name} ({where}) done in {time.monotonic() - begun:.1f} s, {_main_score(entry)}")
    elapsed = time.monotonic() - start
    last = f", {_main_score(entry)}" if len(jobs) == 1 else ""
    say(f"{tag}{task.name} done in {elapsed:.1f} s{last}")
    return TaskResult(task=task, scores=scores, evaluation_time=elapsed, model=enc.name,
                      prompts=prompts_used(task, policy), prompt_policy=policy.kind)


def evaluate(encoder: Encoder, selections: Sequence[Selection], *, data_root: str | Path | None = None,
             prompts: str | PromptPolicy = "auto", output_dir: str | Path | None = None,
             cache_dir: str | Path | None = None, progress: bool = False,
             report: Reporter | None = None) -> list[TaskResult]:
    """Evaluate ``encoder`` on the selected tasks; write one mteb-layout JSON per task when ``output_dir`` is set.

    Args:
        encoder: any ``Encoder`` (harrier's runtime, sentence-transformers, or your own).
        selections: from ``tasks.select_tasks``, ``tasks.select_suite`` or ``local.load_task_file``.
        data_root: folder with the raw datasets (default: ``$HARRIER_DATA``, see ``default_data_root``).
        prompts: "auto", "instructions", "model", "none", or a ``PromptPolicy``.
        output_dir: where to write ``{task}.json`` files.
        cache_dir: embedding cache folder (None: no cache; duplicate texts are still embedded once per call).
        progress: show progress bars.
        report: called with one line per task start and end (and per subset of multi-subset tasks), with the
            elapsed seconds; default ``log.info``. The CLI prints them when progress bars are off.
    """
    from harrier.eval.cache import CachedEncoder, DedupEncoder

    metrics.require_dependencies()
    root = resolve_data_root(data_root) if any(s.task.folder for s in selections) else Path(data_root or ".")
    policy = choose_policy(encoder, prompts) if isinstance(prompts, str) else prompts
    cached = CachedEncoder(encoder, cache_dir) if cache_dir is not None else None
    results: list[TaskResult] = []
    failures: list[str] = []
    for n, sel in enumerate(selections, 1):
        enc: Encoder = cached if cached is not None else DedupEncoder(encoder)  # memo per task, freed after it
        res = evaluate_selection(enc, sel, root, policy, progress, report, tag=f"[{n}/{len(selections)}] ")
        results.append(res)
        if output_dir is not None:
            try:
                res.write(output_dir)
            except OutputError as err:  # keep evaluating: the result is in a rescue file or in memory
                log.info("%s", err)  # reported once, by ResultsNotWrittenError, when the evaluation ends
                failures.append(str(err))
    if cached is not None:
        log.info("embedding cache %s: %d hits, %d misses", cached.path, cached.hits, cached.misses)
        cached.close()
    if failures:
        raise ResultsNotWrittenError(results, failures)
    return results


class ResultsNotWrittenError(OutputError):
    """Evaluation finished but some result files could not be written where asked; ``results`` holds every
    result and the message says where each unwritten one went instead."""

    def __init__(self, results: list[TaskResult], failures: list[str]) -> None:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(failures[0] + more)
        self.results = results
        self.failures = failures
