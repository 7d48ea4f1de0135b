"""Training and distillation for harrier-style embedders: contrastive + KL distillation, GradCache, DDP/FSDP2.

Entry points: ``harrier train|distill|mine-negatives|score-teacher|merge`` (see :mod:`harrier.train.cli`),
``python -m harrier.train --config recipe.yaml`` (torchrun), and :func:`harrier.train.loop.train` from Python.
Needs the ``[train]`` extra (PyYAML); everything else is in harrier's core dependencies.
"""

from __future__ import annotations
