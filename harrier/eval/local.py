"""Your own data as an evaluation task: one JSONL file per task, one layout per task type.

Every line is a JSON object. Optional on every line: ``"lang"`` (subset; default ``"default"``) and ``"split"``
(default ``"test"``). Layouts (required fields):

- STS:                {"sentence1", "sentence2", "score"}         (any numeric scale)
- PairClassification: {"sentence1", "sentence2", "label"}         (label 1 = similar/paraphrase, 0 = not)
- BitextMining:       {"sentence1", "sentence2"}                  (sentence1 must retrieve its sentence2)
- Classification:     {"text", "label"}; lines with "split": "train" are the training pool (two labels or more),
                      the others are scored; labels are class-encoded as mteb does (names sorted as strings)
- MultilabelClassification: {"text", "label": [labels]} (a list, possibly empty); "train" lines as Classification;
                      a scored split over max_eval_samples lines is cut as mteb cuts it (``stratify.py``)
- Clustering:         {"text", "label"}
- Retrieval:          {"kind": "document", "id", "text"} and
                      {"kind": "query", "id", "text", "relevant": {doc id: grade}}
- Reranking:          as Retrieval, and each query also lists "candidates": [doc ids] to rank
- InstructionReranking: as Reranking; a query may have "instruction" (embedded after its text, joined by a space,
                      as mteb joins them); queries come in pairs "<id>-og" / "<id>-changed" (original and changed
                      instruction), and each "-changed" query lists "changed": [doc ids], the documents whose
                      relevance the changed instruction alters (FollowIR's qrel_diff; p-MRR is computed on them)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harrier.eval.data import BitextData, ClassificationData, ClusteringData, PairData, RetrievalData, TaskData
from harrier.eval.protocols import MultilabelClassificationProtocol, TaskProtocol, default_protocol, override
from harrier.eval.tasks import RANKING_TYPES, TASK_TYPES, Selection, TaskSpec
from harrier.jsonl import JsonlError, parse_lines

if TYPE_CHECKING:
    from harrier.eval.metadata import TaskMetadata

log = logging.getLogger(__name__)

REQUIRED = {
    "STS": ("sentence1", "sentence2", "score"),
    "PairClassification": ("sentence1", "sentence2", "label"),
    "BitextMining": ("sentence1", "sentence2"),
    "Classification": ("text", "label"),
    "MultilabelClassification": ("text", "label"),
    "Clustering": ("text", "label"),
}


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        raise ValueError(f"task file {path} does not exist")
    rows = []
    try:
        for n, row in parse_lines(path.read_text(encoding="utf-8").splitlines()):
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: each line must be a JSON object")
            row["_line"] = n
            rows.append(row)
    except JsonlError as err:
        raise ValueError(f"{path}:{err.line}: {err.reason}") from None
    if not rows:
        raise ValueError(f"task file {path} has no rows")
    return rows


def _check(path: Path, row: Mapping[str, object], fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{path}:{row['_line']}: missing field(s) {', '.join(missing)}")


def _number(path: Path, row: Mapping[str, object], field: str, kind: type = float) -> float:
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise ValueError(f"{path}:{row['_line']}: field {field!r} must be {'an integer' if kind is int else 'a number'}"
                         f", got {value!r}")
    return kind(value)


def _text(path: Path, row: Mapping[str, object], field: str) -> str:
    value = row[field]
    if not isinstance(value, str):
        raise ValueError(f"{path}:{row['_line']}: field {field!r} must be a string, got {value!r}")
    return value


def _cluster_label(path: Path, row: Mapping[str, object]) -> str | list[str]:
    """A label, or a list of labels from the top level down (hierarchical clustering)."""
    label = row["label"]
    if isinstance(label, list):
        if not label:
            raise ValueError(f"{path}:{row['_line']}: field 'label' must not be an empty list")
        return [str(x) for x in label]
    return str(label)


def _simple(path: Path, rows: list[dict[str, object]], task_type: str) -> TaskData:
    if task_type == "Clustering":
        return ClusteringData([_text(path, r, "text") for r in rows], [_cluster_label(path, r) for r in rows])
    first, second = [_text(path, r, "sentence1") for r in rows], [_text(path, r, "sentence2") for r in rows]
    if task_type == "STS":
        return PairData(first, second, scores=[_number(path, r, "score") for r in rows])
    if task_type == "PairClassification":
        labels = [int(_number(path, r, "label", int)) for r in rows]
        bad = next((r for r, y in zip(rows, labels, strict=True) if y not in (0, 1)), None)
        if bad is not None:
            raise ValueError(f"{path}:{bad['_line']}: PairClassification labels must be 0 or 1, got {bad['label']!r}")
        return PairData(first, second, labels=labels)
    return BitextData(first, second)


def _id_list(path: Path, row: Mapping[str, object], field: str) -> list[str]:
    value = row[field]
    if not isinstance(value, list):
        raise ValueError(f"{path}:{row['_line']}: field {field!r} must be a list of document ids, got {value!r}")
    return [str(d) for d in value]


def _query_text(path: Path, row: Mapping[str, object]) -> str:
    """The query as embedded: its text, then its instruction after a space (mteb's
    ``_combine_queries_with_instruction_text``)."""
    text = _text(path, row, "text")
    return text if row.get("instruction") is None else f"{text} {_text(path, row, 'instruction')}"


def _changed_pairs(path: Path, rows: list[dict[str, object]], queries: Mapping[str, str]
                   ) -> dict[str, list[str]]:
    """Base query id -> the documents its changed instruction alters, from the "-changed" queries' "changed"."""
    changed = {}
    for r in rows:
        if r.get("kind") != "query" or "changed" not in r:
            continue
        qid = str(r["id"])
        if not qid.endswith("-changed"):
            raise ValueError(f"{path}:{r['_line']}: only a \"<id>-changed\" query lists \"changed\" documents, "
                             f"not {qid!r}")
        base = qid.removesuffix("-changed")
        if f"{base}-og" not in queries:
            raise ValueError(f"{path}:{r['_line']}: query {qid!r} has no original query {base + '-og'!r}")
        changed[base] = _id_list(path, r, "changed")
    if not changed:
        raise ValueError(f"{path}: an InstructionReranking task needs \"<id>-og\" / \"<id>-changed\" query pairs "
                         "whose \"-changed\" query lists \"changed\": [doc ids] (p-MRR is computed on them)")
    return changed


def _retrieval(path: Path, rows: list[dict[str, object]], task_type: str) -> RetrievalData:
    corpus, queries, qrels, candidates = {}, {}, {}, {}
    rerank = task_type != "Retrieval"
    for r in rows:
        kind = r.get("kind")
        if kind == "document":
            _check(path, r, ("id", "text"))
            corpus[str(r["id"])] = _text(path, r, "text")
        elif kind == "query":
            _check(path, r, ("id", "text", "relevant") + (("candidates",) if rerank else ()))
            qid = str(r["id"])
            queries[qid] = _query_text(path, r) if task_type == "InstructionReranking" else _text(path, r, "text")
            relevant = r["relevant"]
            if not isinstance(relevant, dict) or not all(isinstance(g, int | float) and not isinstance(g, bool)
                                                         for g in relevant.values()):
                raise ValueError(f"{path}:{r['_line']}: field 'relevant' must map document ids to numeric grades, "
                                 f"got {relevant!r}")
            qrels[qid] = {str(d): int(g) for d, g in relevant.items()}
            if rerank:
                candidates[qid] = _id_list(path, r, "candidates")
        else:
            raise ValueError(f"{path}:{r['_line']}: field kind must be \"document\" or \"query\"")
    changed = _changed_pairs(path, rows, queries) if task_type == "InstructionReranking" else None
    unknown = {d for rel in qrels.values() for d in rel} | {d for c in candidates.values() for d in c}
    unknown |= {d for docs in (changed or {}).values() for d in docs}
    unknown -= set(corpus)
    if unknown:
        raise ValueError(f"{path}: queries refer to unknown document ids {', '.join(sorted(unknown)[:5])}")
    if not queries or not corpus:
        raise ValueError(f"{path}: a {task_type} task needs at least one query and one document")
    if changed is not None and not any(docs and qrels[f"{q}-og"] and qrels[f"{q}-changed"] for q, docs in
                                       changed.items()):  # mteb drops queries without relevant documents
        raise ValueError(f"{path}: p-MRR needs a query pair with relevant documents on both queries and a non-empty "
                         "\"changed\" list; none has")
    return RetrievalData(queries, corpus, qrels, candidates if rerank else None, changed)


def _group(rows: list[dict[str, object]]) -> dict[tuple[str, str], list[dict[str, object]]]:
    groups: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for r in rows:
        groups[(str(r.get("lang", "default")), str(r.get("split", "test")))].append(r)
    return groups


def parse_task_file(path: str | Path, task_type: str, *, protocol: TaskProtocol | None = None
                    ) -> dict[tuple[str, str], TaskData]:
    """(lang, split) -> data of a local task file; ValueError with the file and line for malformed input.
    ``protocol`` (default: the type's) gives classification's train split and multilabel's limits."""
    p = Path(path)
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    protocol = protocol if protocol is not None else default_protocol(task_type)
    rows = _read_jsonl(p)
    if task_type in RANKING_TYPES:
        return {key: _retrieval(p, group, task_type) for key, group in _group(rows).items()}
    for r in rows:
        _check(p, r, REQUIRED[task_type])
    groups = _group(rows)
    if task_type == "MultilabelClassification":
        assert isinstance(protocol, MultilabelClassificationProtocol)
        return _multilabel(p, groups, protocol)
    if task_type != "Classification":
        return {key: _simple(p, group, task_type) for key, group in groups.items()}
    return _classification(p, groups, getattr(protocol, "train_split", "train"))


def _train_rows(p: Path, groups: dict[tuple[str, str], list[dict[str, object]]], lang: str, train_split: str,
                task_type: str) -> list[dict[str, object]]:
    train = groups.get((lang, train_split))
    if not train:
        raise ValueError(f"{p}: {task_type} needs lines with \"split\": \"{train_split}\" (the protocol's train "
                         f"split; language {lang})")
    return train


def _label_ids(rows: list[dict[str, object]]) -> dict[str, int]:
    """Label name -> id over all of a language's rows, names sorted as strings: what mteb's class encoding of the
    label column gives (``AbsTask.stratified_subsampling``, like ``datasets``' ``class_encode_column``), so binary
    AP's positive class (id 1) is mteb's, for numeric and string labels alike."""
    return {name: i for i, name in enumerate(sorted({str(r["label"]) for r in rows}))}


def _classification(p: Path, groups: dict[tuple[str, str], list[dict[str, object]]], train_split: str = "train"
                    ) -> dict[tuple[str, str], TaskData]:
    out: dict[tuple[str, str], TaskData] = {}
    for lang in sorted({lang for lang, _ in groups}):
        train = _train_rows(p, groups, lang, train_split, "Classification")
        if len({str(r["label"]) for r in train}) < 2:
            raise ValueError(f"{p}: Classification needs at least two labels on the \"{train_split}\" lines "
                             f"(language {lang} has only {train[0]['label']!r})")
        ids = _label_ids([r for (g_lang, _), group in groups.items() if g_lang == lang for r in group])
        for (g_lang, split), group in groups.items():
            if g_lang == lang and split != train_split:
                out[(lang, split)] = ClassificationData(
                    [_text(p, r, "text") for r in train], [ids[str(r["label"])] for r in train],
                    [_text(p, r, "text") for r in group], [ids[str(r["label"])] for r in group])
    if not out:
        raise ValueError(f"{p}: Classification needs lines to score besides the \"train\" ones")
    return out


def _label_list(p: Path, row: Mapping[str, object]) -> list[str | int | float]:
    label = row["label"]
    if not isinstance(label, list) or not all(isinstance(y, str | int | float) and not isinstance(y, bool)
                                              for y in label):
        raise ValueError(f"{p}:{row['_line']}: a MultilabelClassification 'label' must be a list of labels (strings "
                         f"or numbers), got {label!r}")
    return label


def _multilabel(p: Path, groups: dict[tuple[str, str], list[dict[str, object]]],
                protocol: MultilabelClassificationProtocol) -> dict[tuple[str, str], TaskData]:
    """Label lists kept as given: mteb binarises them in the sorted order of their values, which its cut of a split
    over ``max_eval_samples`` rows depends on (``stratify.py``), so a language's labels are all strings or all
    numbers."""
    from harrier.eval.metrics import SEED
    from harrier.eval.stratify import stratified_sample

    out: dict[tuple[str, str], TaskData] = {}
    cap = protocol.max_eval_samples
    for lang in sorted({lang for lang, _ in groups}):
        train = _train_rows(p, groups, lang, protocol.train_split, "MultilabelClassification")
        train_labels = [_label_list(p, r) for r in train]
        if sum(1 for y in train_labels if y) < protocol.n_neighbors:
            raise ValueError(f"{p}: MultilabelClassification needs at least n_neighbors={protocol.n_neighbors} "
                             f"\"{protocol.train_split}\" lines with a label (language {lang})")
        kinds = {isinstance(y, str) for (g_lang, _), group in groups.items() if g_lang == lang for r in group
                 for y in _label_list(p, r)}
        if len(kinds) > 1:
            raise ValueError(f"{p}: MultilabelClassification labels must be all strings or all numbers (language "
                             f"{lang} mixes them)")
        for (g_lang, split), group in groups.items():
            if g_lang != lang or split == protocol.train_split:
                continue
            if cap is not None and len(group) > cap:  # mteb's cut, on labels only, before anything is embedded
                group = [group[i] for i in stratified_sample([_label_list(p, r) for r in group], cap, SEED)]
            labels = [_label_list(p, r) for r in group]
            if not any(labels):
                raise ValueError(f"{p}: MultilabelClassification needs labels on the lines it scores (split {split}, "
                                 f"language {lang} has none)")
            out[(lang, split)] = ClassificationData([_text(p, r, "text") for r in train], train_labels,
                                                    [_text(p, r, "text") for r in group], labels)
    if not out:
        raise ValueError(f"{p}: MultilabelClassification needs lines to score besides the "
                         f"\"{protocol.train_split}\" ones")
    return out


def _resolve(path: Path, task_type: str | None, task_name: str | None) -> TaskMetadata | None:
    """The MTEB metadata a task file takes: ``task_name``'s, else its file name's when that is an MTEB task."""
    from harrier.eval.metadata import is_mteb_task, task_metadata

    name = task_name or (path.stem if is_mteb_task(path.stem) else None)
    if name is None:
        if not task_type:
            raise ValueError("--task-file needs --task-type (one of " + ", ".join(TASK_TYPES) + ") or --task-name")
        return None
    meta = task_metadata(name)
    if meta.type not in TASK_TYPES:
        raise ValueError(f"{name} is a {meta.type} task; task files cover {', '.join(TASK_TYPES)}")
    if task_type and task_type != meta.type:
        raise ValueError(f"{name} is a {meta.type} task in mteb's metadata, not {task_type}")
    from harrier.eval.metadata import check_scorer

    check_scorer(meta)
    if meta.transforms_data:
        log.warning("mteb changes %s's data after download (%s): the task file must hold the transformed rows",
                    name, ", ".join(meta.transforms_data))
    return meta


def _check_against(path: Path, meta: TaskMetadata, pairs: list[tuple[str, str]]) -> None:
    bad_subsets = sorted({s for s, _ in pairs} - set(meta.subsets))
    if bad_subsets:
        raise ValueError(f"{path}: lang {', '.join(bad_subsets)} is not a subset of {meta.name}; its subsets are "
                         f"{', '.join(list(meta.subsets)[:30])}" + (" ..." if len(meta.subsets) > 30 else ""))
    bad_splits = sorted({sp for _, sp in pairs} - set(meta.eval_splits))
    if bad_splits:
        raise ValueError(f"{path}: split {', '.join(bad_splits)} is not an evaluation split of {meta.name}; its "
                         f"splits are {', '.join(meta.eval_splits)}")


def load_task_file(path: str | Path, task_type: str | None = None, *, name: str | None = None,
                   instruction: str | None = None, task_name: str | None = None,
                   protocol: Sequence[str] = ()) -> Selection:
    """A ``Selection`` for a local JSONL task; ``instruction`` is what instruction models get (else the task's or
    mteb's default for the task type); models with named prompts get their prompt for the task type.

    ``task_name`` (or a file named after an MTEB(Multilingual, v2) task) gives the task mteb's metadata: its type,
    main score, protocol constants, prompt; the file's subsets and splits must be the task's. ``protocol``:
    ``KEY=VALUE`` overrides of the protocol, recorded in the results. Every check runs here, before any model loads.
    """
    from harrier.eval.metadata import MetadataUse

    p = Path(path)
    meta = _resolve(p, task_type, task_name)
    kind = meta.type if meta else str(task_type)
    proto, changes = override(meta.protocol if meta else default_protocol(kind), protocol)
    data = parse_task_file(p, kind, protocol=proto)
    pairs = [(s, sp) for s, sp in data]
    if meta:
        _check_against(p, meta, pairs)
    subsets = tuple(dict.fromkeys(lang for lang, _ in data))
    splits = tuple(dict.fromkeys(split for _, split in data))
    if meta:  # mteb's order
        subsets = tuple(s for s in meta.subsets if s in subsets)
        splits = tuple(s for s in meta.eval_splits if s in splits)

    def load(root: Path, subset: str, split: str) -> TaskData:
        if (subset, split) not in data:
            raise ValueError(f"task file {path} has no rows for lang {subset!r} and split {split!r}")
        return data[(subset, split)]

    use = MetadataUse(meta.name if meta else None, meta.mteb_version if meta else None, changes)
    languages = {s: tuple(meta.subsets[s]) for s in subsets} if meta else {s: (s,) for s in subsets}
    spec = TaskSpec(meta.name if meta else (name or p.stem), kind, splits, subsets, load, languages,
                    main_score=meta.main_score if meta else "", prompt=instruction or (meta.prompt if meta else None),
                    revision=meta.revision if meta else None, protocol=proto, source=str(path), metadata=use)
    pairs = [(s, sp) for sp in splits for s in subsets if (s, sp) in data]
    return Selection(spec, tuple(dict.fromkeys(s for s, _ in pairs)), tuple(dict.fromkeys(sp for _, sp in pairs)))
