"""Training data from the config: one dataset per file, directory entry or adapter output (``build_datasets``).

Records and the dataset types live in ``records.py``, the adapters over public corpora in ``adapters/``, the
mixture over the datasets in ``sampler.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harrier.train.adapters import load_adapter
from harrier.train.config import DatasetSpec
from harrier.train.records import Dataset, JsonlDataset, MemoryDataset, Record, data_files, spec_prefix


def _adapter_datasets(adapter: str, spec: DatasetSpec) -> list[MemoryDataset]:
    """The datasets of ``adapter`` over ``spec.path``, with the spec's query prefix when it sets one and named
    ``<spec name>/<dataset>`` when it has a name."""
    found = load_adapter(adapter, spec.path, **spec.options)
    prefix = spec_prefix(spec.instruction, spec.task, spec.prompt)
    if prefix:
        found = [MemoryDataset(d.name, [Record(r.query, r.positives, r.negatives, prefix, r.teacher_scores)
                                        for r in d.records]) for d in found]
    if spec.name:
        found = [MemoryDataset(f"{spec.name}/{d.name}", d.records) for d in found]
    return found


def build_datasets(specs: Sequence[DatasetSpec], *,
                   strict: bool = False) -> tuple[list[Dataset], list[DatasetSpec]]:
    """Datasets from ``DataConfig.datasets`` specs (files, directories, adapters), and the spec each came from
    (its mixture weight, teacher prompts, symmetry). Dataset names must be unique.

    A directory contributes one dataset per file (named ``<spec name>/<file stem>``), each with the spec's weight.
    """
    datasets: list[Dataset] = []
    sources: list[DatasetSpec] = []
    for spec in specs:
        found: list[Dataset]
        if spec.adapter:
            found = list(_adapter_datasets(spec.adapter, spec))
        else:
            files = data_files(spec.path)
            base = spec.name or Path(spec.path).stem
            prefix = spec_prefix(spec.instruction, spec.task, spec.prompt)
            found = [JsonlDataset(f, name=base if len(files) == 1 else f"{base}/{f.stem}", default_prefix=prefix,
                                  strict=strict) for f in files]
        taken = {d.name for d in datasets} & {d.name for d in found}
        if taken:
            raise ValueError(f"two data.datasets entries yield a dataset named {sorted(taken)[0]!r}; give one a name")
        datasets += found
        sources += [spec] * len(found)
    return datasets, sources
