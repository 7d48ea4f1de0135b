"""Output paths: checked before any work starts, written atomically, and rescued when writing fails after the work.

Every command that writes a result goes through here:

- ``check_file(path)`` / ``check_dir(path)`` run before a model is loaded. They refuse a file target that is a
  directory, a folder target that is a file, a parent that is missing or not a folder, and a place where no file
  can be created (they create and remove a probe file, which is the only test that holds for read-only mounts,
  ``/proc``, ``/sys`` and permission bits alike).
- ``atomic_file(path)`` yields a temporary file in the target's folder and renames it into place when the block
  ends; on an error or Ctrl-C the temporary file is removed and the target is untouched.
- ``write_or_rescue(path, write)`` calls ``write(path)`` and, when that fails after the work is done (disk full,
  permissions changed), writes the result to a rescue path instead (next to the target, else the current folder,
  else the system's temporary folder) and raises ``OutputError`` whose message says where the result is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


class OutputError(OSError):
    """An output that cannot be written; the message is one line for the user (and says where a rescue went)."""


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _probe(folder: Path, what: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".harrier-probe-", dir=folder)
    except OSError as err:
        raise OutputError(f"{what}: cannot create files in {folder} ({_reason(err)})") from err
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_file(target: str | os.PathLike, what: str = "output") -> Path:
    """The target file as a Path, after checking that it can be written (OutputError naming the problem)."""
    path = Path(target).expanduser()
    label = f"{what} {target}"
    if path.is_dir():
        raise OutputError(f"{label}: is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{label}: exists and is not writable")
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{label}: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{label}: {parent} is not a directory")
    _probe(parent, label)
    return path


def check_dir(target: str | os.PathLike, what: str = "output folder") -> Path:
    """The target folder as a Path (created if missing, with its parents), after checking that files can be made
    in it."""
    path = Path(target).expanduser()
    label = f"{what} {target}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{label}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise OutputError(f"{label}: a part of the path is a file, not a directory") from err
    except OSError as err:
        raise OutputError(f"{label}: cannot create it ({_reason(err)})") from err
    _probe(path, label)
    return path


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator:
    """An open temporary file beside ``target``, renamed onto it when the block ends without an error."""
    path = Path(target).expanduser()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def rescue_candidates(path: Path) -> list[Path]:
    """Where a result goes when ``path`` cannot be written: beside it, in the current folder, in the temp folder."""
    name = f"{path.stem}.rescued{path.suffix}"
    return [path.with_name(name), Path.cwd() / name, Path(tempfile.gettempdir()) / name]


def write_or_rescue(target: str | os.PathLike, write: Callable[[Path], None], what: str = "output") -> Path:
    """``write(path)`` to the target; when that raises OSError, write to the first rescue path that works.

    Returns the target on success. After a rescue, raises OutputError saying why the target failed and where the
    result is; when no rescue path works either, the message says so (the caller still holds the result).
    """
    path = Path(target).expanduser()
    try:
        write(path)
        return path
    except OSError as err:
        first = f"{what} {target}: cannot write it ({_reason(err)})"
    for spare in rescue_candidates(path):
        if spare == path:
            continue
        try:
            write(spare)
        except OSError:
            continue
        raise OutputError(f"{first}; the result was saved to {spare} instead")
    raise OutputError(f"{first}, nor any rescue path ({', '.join(map(str, rescue_candidates(path)))})")
