"""The same loop under torchrun-style launches: 2 gloo processes (DDP and FSDP2) on CPU follow the 1-process run."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch.multiprocessing as mp
from test_loop import _cfg, _data, _losses

from harrier.train.loop import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, model_dir, data, out, parallel):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch

    torch.set_num_threads(1)
    import datetime

    import torch.distributed as dist

    from harrier.train.distributed import shutdown

    # a short timeout turns a collective mismatch (one rank waiting forever) into a test failure
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))

    try:
        train(_cfg(model_dir, data, out, steps=3, parallel=parallel, device="cpu"))
    finally:
        shutdown()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_loop_matches_one_process(tiny_gemma3_dir, tmp_path, parallel):
    data = _data(tmp_path)
    train(_cfg(tiny_gemma3_dir, data, tmp_path / "one", steps=3))
    out = tmp_path / parallel
    mp.spawn(_worker, args=(2, _free_port(), tiny_gemma3_dir, data, out, parallel), nprocs=2, join=True)
    one, two = _losses(tmp_path / "one"), _losses(out)
    assert len(two) == 3
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["tokens"] == json.loads((tmp_path / "one" / "train_log.jsonl").read_text().splitlines()[0])["tokens"]
    assert (out / "model" / "model.safetensors").is_file()


def test_torchrun_entry_point(tiny_gemma3_dir, tmp_path):
    """``torchrun -m harrier.train --config`` (the documented launch line) with 2 CPU processes."""
    import subprocess
    import sys

    data = _data(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{init: '{tiny_gemma3_dir}', max_length: 64}}\n"
                      f"data: {{datasets: [{{path: '{data}'}}]}}\n"
                      f"run: {{output: '{tmp_path / 'out'}', steps: 2, batch_size: 4, progress: false, device: cpu}}\n")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                f"--master-port={_free_port()}"]
    proc = subprocess.run([*torchrun, "-m", "harrier.train", "--config", str(recipe), "--set", "optim.lr=1e-4"],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("exported") == 1
    assert len(_losses(tmp_path / "out")) == 2 and (tmp_path / "out" / "model" / "modules.json").is_file()
