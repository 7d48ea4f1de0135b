"""cpu_malloc: large CPU tensors come from glibc's heap after ``tune()``, in the main thread and in threads started
afterwards; off by ``HARRIER_CPU_MALLOC=0``; a bad setting is one error. Each check runs in a fresh process
(``tune`` changes the process's malloc once)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from harrier import Embedder

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="cpu_malloc tunes glibc only; this C library is left alone")

# How many bytes glibc has mmap'ed for allocations while a 64 MiB tensor is alive, in the main thread and in a
# thread started after tune() (mallinfo2's hblkhd: glibc >= 2.33)
PROBE = r"""
import ctypes, json, sys, threading
from harrier import cpu_malloc
state = cpu_malloc.tune()
import torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mmapped_while_alive():
    before = libc.mallinfo2().hblkhd
    x = torch.ones(16 << 20, dtype=torch.int32)  # 64 MiB: over glibc's largest default mmap threshold (32 MiB)
    grown = libc.mallinfo2().hblkhd - before
    del x
    return grown

main = mmapped_while_alive()
box = []
t = threading.Thread(target=lambda: box.append(mmapped_while_alive()))
t.start(); t.join()
print(json.dumps({"state": state, "main": main, "thread": box[0]}))
"""


def _probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_large_tensors_come_from_the_heap_once_tuned():
    tuned = _probe(HARRIER_CPU_MALLOC="1")
    assert tuned["state"].startswith("glibc tuned")
    assert tuned["main"] < 1 << 20 and tuned["thread"] < 1 << 20, tuned
    default = _probe(HARRIER_CPU_MALLOC="0")  # the same probe sees the mmap without the tuning: it can fail
    assert default["state"] == "glibc defaults (HARRIER_CPU_MALLOC=0)"
    assert default["main"] >= 64 << 20 and default["thread"] >= 64 << 20, default


def test_a_bad_setting_is_one_error():
    code = "from harrier import cpu_malloc; cpu_malloc.tune()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HARRIER_CPU_MALLOC": "yes"})
    assert out.returncode != 0 and "HARRIER_CPU_MALLOC must be 0 or 1, got 'yes'" in out.stderr
    cli = subprocess.run([sys.executable, "-m", "harrier.cli", "info", "--model", "/nonexistent"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "HARRIER_CPU_MALLOC": "yes"})
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr.strip().splitlines() == ["harrier: error: HARRIER_CPU_MALLOC must be 0 or 1, got 'yes'"]


def test_info_says_how_malloc_is_set_up(tiny_gemma3_dir):
    info = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").info()
    want = "glibc tuned" if GLIBC else "left as it is"
    assert info.cpu_malloc.startswith(want), info.cpu_malloc
