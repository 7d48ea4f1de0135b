"""Write harrier/data/mteb_v2_task_metadata.json from the installed mteb (rerun for a new mteb release).

    python scripts/mteb_task_metadata.py [--check]

One line per task, so a diff shows which tasks a new mteb changed. ``--check`` writes nothing and exits 1 when the
shipped file differs from what the installed mteb gives (tests/eval/test_task_metadata.py checks the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harrier.eval.metadata import METADATA_FILE
from harrier.eval.mteb_metadata import generate

TARGET = Path(__file__).resolve().parents[1] / "harrier" / METADATA_FILE


def dumps(doc: dict) -> str:
    head = {k: v for k, v in doc.items() if k != "tasks"}
    lines = [json.dumps(name, ensure_ascii=False) + ": " + json.dumps(entry, ensure_ascii=False, sort_keys=False)
             for name, entry in doc["tasks"].items()]
    return (json.dumps(head, ensure_ascii=False)[:-1] + ', "tasks": {\n' + ",\n".join(lines) + "\n}}\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 when the shipped file is stale")
    args = p.parse_args()
    text = dumps(generate())
    assert json.loads(text) == json.loads(json.dumps(generate()))
    if args.check:
        same = TARGET.is_file() and json.loads(TARGET.read_text(encoding="utf-8")) == json.loads(text)
        print(f"{TARGET}: {'up to date' if same else 'differs from the installed mteb; rerun without --check'}")
        return 0 if same else 1
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(json.loads(text)['tasks'])} tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
