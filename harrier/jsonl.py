"""The one JSONL line reader: the CLI's inputs, local evaluation task files and teacher-scored training files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


class JsonlError(ValueError):
    """A line that is not valid JSON. ``line`` is its 1-based number; the caller adds the file name."""

    def __init__(self, line: int, error: json.JSONDecodeError) -> None:
        super().__init__(f"line {line}: not valid JSON ({error.msg})")
        self.line = line
        self.error = error
        self.reason = f"not valid JSON ({error.msg})"


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, decoded value) of every non-blank line, lazily; blank lines are skipped but counted.

    Raises ``JsonlError`` at the first line that is not valid JSON. Callers check the values' shape themselves.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise JsonlError(number, err) from err
        yield number, value
