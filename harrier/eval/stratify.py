"""Iterative stratification of multi-label rows (Sechidis et al. 2011, order-2 label pairs), as mteb cuts a
multilabel evaluation split over ``max_eval_samples`` rows (``mteb.abstasks._multilabel_subsampling``, mteb's copy
of scikit-multilearn's ``IterativeStratification``).

The cut must pick the very rows mteb picks, so this follows that code step for step: the same walk over label
combinations (first seen first, a later one only when it has more distinct labels and less support), the same
``RandomState(seed)`` draws to break ties between folds, the same order of popping rows. Pure Python on label ids.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence

import numpy as np


def _most_desired(with_combination: dict[tuple[int, ...], list[int]]) -> tuple[int, ...] | None:
    chosen, best_labels, best_support = None, 0, 0
    for combination, rows in with_combination.items():
        labels, support = len(set(combination)), len(rows)
        if support == 0:
            continue
        if chosen is None or (best_labels < labels and best_support > support):
            chosen, best_labels, best_support = combination, labels, support
    return chosen


def _tie_break(desired: np.ndarray, folds: np.ndarray, rng: np.random.RandomState) -> int:
    if len(folds) == 1:
        return int(folds[0])
    best = np.where(desired == max(desired[folds]))[0]
    return int(rng.choice(np.array([x for x in best if x in folds]), 1)[0])


def stratified_sample(labels: Sequence[Sequence[Hashable]], n: int, seed: int = 42) -> list[int]:
    """Indices (ascending) of the ``n`` of ``len(labels)`` rows that mteb keeps of a multilabel split: the first
    fold of a two-fold iterative stratification with fold shares ``n / len(labels)`` and the rest. Labels are
    binarised as mteb does (columns in the sorted order of the label values), so the values' type matters."""
    total = len(labels)
    share = [n / total, 1.0 - n / total]
    column = {y: i for i, y in enumerate(sorted({y for row in labels for y in row}))}
    rows = [sorted({column[y] for y in row}) for row in labels]
    desired_per_fold = np.array([share[i] * total for i in range(2)])
    used = dict.fromkeys(range(total), False)
    per_row: list[list[tuple[int, ...]]] = [[] for _ in range(total)]
    with_combination: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        for combination in itertools.combinations_with_replacement(row, 2):
            with_combination.setdefault(combination, []).append(i)
            per_row[i].append(combination)
    desired = {c: np.array([len(r) * share[j] for j in range(2)]) for c, r in with_combination.items()}
    rng = np.random.RandomState(seed)
    folds: list[list[int]] = [[], []]

    combination = _most_desired(with_combination)
    while combination is not None:  # rows with labels, rarest combinations first
        while with_combination[combination]:
            row = with_combination[combination].pop()
            if used[row]:
                continue
            fold = _tie_break(desired[combination], np.where(desired[combination] == max(desired[combination]))[0],
                              rng)
            folds[fold].append(row)
            used[row] = True
            for c in per_row[row]:
                if row in with_combination[c]:
                    with_combination[c].remove(row)
                desired[c][fold] -= 1
            desired_per_fold[fold] -= 1
        combination = _most_desired(with_combination)
    unlabelled = [i for i, v in used.items() if not v]
    while unlabelled:  # rows without labels: any fold still short of rows
        row = unlabelled.pop()
        fold = rng.choice(np.where(desired_per_fold > 0)[0], 1)[0]
        desired_per_fold[fold] -= 1
        folds[fold].append(row)
    return sorted(folds[0])
