"""What a killed run leaves in its folder, put right when the next run starts (under the run's job lock).

A ``kill -9`` can stop a run anywhere: inside a checkpoint save (``checkpoints/.step-*.tmp/``, ``latest.tmp``),
while pruning old checkpoints (a half-removed ``step-*``), inside the export (its temporary folder, or the old
export moved aside), or between a step's log row and the checkpoint that would have kept it. The run that
follows removes those leftovers and, resuming from step ``s``, drops the log rows of the steps after ``s`` (it
redoes them), so a run killed any number of times leaves the same folder as one that never was, log included.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
LOG = "train_log.jsonl"


def remove_leftovers(out: Path, export: Path) -> None:
    """Remove a dead run's temporary files from the run folder ``out`` and beside its export folder ``export``."""
    ckpt_root = out / "checkpoints"
    stale = [*ckpt_root.glob(".step-*.tmp"), *ckpt_root.glob("latest.tmp"), *out.glob(f"{LOG}.tmp"),
             *export.parent.glob(f".{export.name}.*.tmp"), *export.parent.glob(f".{export.name}.old")]
    for path in stale:
        log.info("removing %s, left by an interrupted run", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def trim_log(path: Path, step: int) -> None:
    """Keep the rows of ``path`` (``train_log.jsonl``) for steps up to ``step``, the checkpoint resumed from (0:
    none; the run starts over, its evaluation at step 0 included, so no row stays). A torn last row goes too."""
    if not path.is_file():
        return
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row_step = json.loads(line)["step"] if line.endswith("\n") else None
        except (ValueError, KeyError, TypeError):
            row_step = None
        if step > 0 and isinstance(row_step, int) and row_step <= step:
            keep.append(line)
        else:
            dropped += 1
    if not dropped:
        return
    log.info("%s: dropping %d rows after step %d (the resumed run redoes those steps)", path, dropped, step)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep), encoding="utf-8")
    os.replace(tmp, path)
