"""The Ray engine on a real local Ray instance (``ray.init(num_cpus=2)``): same shards as the local engine.

Vectors are bit-identical when the torch thread counts match (an actor with 1 CPU runs 1 torch thread, so the local
run here uses 1 too): both engines run ``encode_window`` on the same windows.
"""

from __future__ import annotations

import pytest
import ray  # (the ray extra is in .[dev]: a missing install fails, never skips)
import torch
from corpus_helpers import make_texts, write_jsonl

from harrier import Embedder
from harrier.corpus.encode import CorpusConfig, encode_corpus
from harrier.corpus.window import LocalEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_writes_the_same_shards_as_local(local_ray, tiny_gemma3_dir, tmp_path):
    from harrier.corpus.ray_engine import RayEngine, RayEngineConfig

    texts = make_texts(30, seed=13, max_words=12)
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    rows.insert(10, {"id": "bad"})
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    model = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32")
    outputs = {}
    for name in ("local", "ray"):
        cfg = CorpusConfig(inputs=(str(src),), output=tmp_path / name, shard_rows=20, window_rows=6, progress=False)
        if name == "ray":
            engine = RayEngine(RayEngineConfig(model=str(tiny_gemma3_dir), dtype="float32", actors=2, actor_cpus=1,
                                               batch_tokens=cfg.batch_tokens))
            encode_corpus(cfg, model, engine)
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                encode_corpus(cfg, model, LocalEngine(model, cfg.batch_tokens))
            finally:
                torch.set_num_threads(threads)
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert sorted(outputs["ray"]) == ["bad_rows.jsonl", "manifest.json", "shard-00000.parquet", "shard-00001.parquet"]
    assert outputs["ray"] == outputs["local"]
    assert ray.is_initialized(), "the engine must not shut down a Ray instance it did not start"
