"""Test-only fault points: ``HARRIER_FAULT_AT=<point>:<n>`` makes the process ``SIGKILL`` itself the n-th time it
reaches the named point, so the fault tests can kill a job at exact moments (inside a shard write, between a
rename and the manifest update) that a kill at a random wall-clock time rarely hits.

Unset (every normal run), ``point`` is one comparison against ``None``. The points, in the order a job meets them:

- corpus: ``shard.window`` (a row group written to ``shard-*.parquet.tmp``), ``shard.closed`` (the ``.tmp`` closed,
  not yet renamed), ``shard.renamed``, ``manifest.half`` (half of ``manifest.json.tmp`` on disk),
  ``manifest.written`` (the ``.tmp`` complete, not yet renamed), ``manifest.saved``, ``bad_rows.renamed``
- training: ``train.step`` (a step done and logged), ``checkpoint.files`` (the state files in ``.step-*.tmp/``),
  ``checkpoint.renamed`` (``step-*/`` in place, ``latest`` not yet moved), ``checkpoint.latest`` (``latest.tmp``
  written), ``checkpoint.saved``, ``export.written`` (the export's temporary folder complete),
  ``export.swapped`` (the old export moved aside, the new one not yet in place)
"""

from __future__ import annotations

import os
import signal

ENV = "HARRIER_FAULT_AT"
_target: tuple[str, int] | None = None
_seen = 0


def arm(spec: str | None = None) -> None:
    """Read the fault point (``spec``, else ``$HARRIER_FAULT_AT``); called at import, again by a forked test runner
    after it sets the variable."""
    global _target, _seen
    spec = os.environ.get(ENV) if spec is None else spec
    _seen = 0
    if not spec:
        _target = None
        return
    name, _, n = spec.rpartition(":")
    if not name or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected POINT:N with N >= 1")
    _target = (name, int(n))


def point(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and this is its n-th hit (else nothing)."""
    global _seen
    if _target is None or _target[0] != name:
        return
    _seen += 1
    if _seen == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


arm()
