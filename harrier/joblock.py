"""One writer per job output: an exclusive ``flock`` on a lock file beside the output, held while the job runs.

Every command that writes a job folder or a job's output file holds one (corpus encode and index, train and distill
run folders, mine-negatives and score-teacher outputs); a second writer gets ``JobLockedError`` naming the holder
(pid, host, start time, command) before any model loads, and the CLI prints it as one line and exits 2.

- The lock is the kernel's: ``flock`` is released when the holder's process dies, ``kill -9`` included, so a lock
  left by a killed job is simply taken over (with a warning naming the dead holder, read from the file it left).
- The lock file holds the holder as one JSON line, for the error message only; the ``flock`` decides.
- A clean release removes the file (while still holding the lock), so a finished job leaves no trace. A taker
  that opened the file just before it was removed finds its inode gone and opens the new one, so two jobs never
  hold two different files for the same output.
- Holding is re-entrant within a process (the CLI takes the lock before loading the model, the library function
  it calls takes it again), keyed by the lock file's resolved path.
- Shared filesystems: Linux maps ``flock`` on NFSv4 onto the server's byte-range locks, which work across clients
  and expire with a dead client's lease; on NFSv3 without lockd, SMB mounts with ``nobrl`` and FUSE/object-store
  mounts (s3fs, gcsfuse) a lock may be local to one machine. See docs/corpus.md.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_NAME = ".harrier.lock"  # inside a job folder

_held: dict[Path, list] = {}  # resolved lock path -> [fd, depth]
_registry = threading.Lock()


class JobLockedError(ValueError):
    """Another live process holds the job's lock; the message names it (one line for the CLI)."""


def lock_path(target: str | os.PathLike, *, folder: bool) -> Path:
    """The lock file of a job folder (inside it) or of a job's output file (a hidden sibling)."""
    path = Path(target).expanduser()
    return path / LOCK_NAME if folder else path.with_name(f".{path.name}.harrier.lock")


def _holder_line() -> str:
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                       "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}) + "\n"


def _read_holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if not raw:
        return None
    try:
        holder = json.loads(raw.splitlines()[0])
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def describe(holder: dict | None) -> str:
    if holder is None:
        return "a process that left no details"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
            f" ({holder.get('command', '?')})")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _acquire(path: Path, what: str) -> int:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise JobLockedError(f"{what} is in use by another harrier job: {describe(holder)}; wait for it to end "
                                 f"or stop it (lock file {path})") from None
        except OSError as err:
            os.close(fd)
            raise JobLockedError(f"{what}: cannot lock {path} ({err.strerror}); this filesystem may not support "
                                 "flock, see docs/corpus.md") from err
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
    stale = _read_holder(fd)
    if stale is not None:
        log.warning("%s: taking over the lock of %s, which is no longer running", what, describe(stale))
    os.ftruncate(fd, 0)
    try:
        os.pwrite(fd, _holder_line().encode(), 0)
        os.fsync(fd)
    except OSError as err:  # a full disk: the details are for messages only, the flock is what holds
        log.warning("%s: cannot write the holder's details into %s (%s); the lock holds", what, path, err.strerror)
    return fd


@contextlib.contextmanager
def hold(target: str | os.PathLike, what: str, *, folder: bool = True) -> Iterator[Path]:
    """Hold the job lock of ``target`` (a folder, created if missing, or a file) for the block.

    Raises JobLockedError when another live process holds it. Re-entrant within a process; on platforms without
    ``fcntl`` (Windows) the block runs unlocked, with a warning.
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:
        log.warning("%s: no flock on this platform; nothing stops a second job from writing it", what)
        yield lock_path(target, folder=folder)
        return
    path = lock_path(target, folder=folder)
    if folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    key = path.parent.resolve() / path.name
    with _registry:
        entry = _held.get(key)
        if entry is None:
            entry = _held[key] = [_acquire(path, what), 0]
        entry[1] += 1
    try:
        yield path
    finally:
        with _registry:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                with contextlib.suppress(OSError):
                    os.unlink(path)  # still locked: a waiting taker sees the inode gone and retries
                os.close(entry[0])
