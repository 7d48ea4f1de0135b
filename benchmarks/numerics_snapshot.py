"""Embeddings of fixed multilingual probe texts, saved or compared bit for bit: the check that a refactor keeps
numerics. Run it on the commit before a change (``--save``) and after (``--compare``).

    python benchmarks/numerics_snapshot.py --save /tmp/before.npz
    python benchmarks/numerics_snapshot.py --compare /tmp/before.npz

Covers the tiny random checkpoints of the tests (Gemma-3 harrier-shaped, Qwen3, EmbeddingGemma-shaped with mean
pooling and Dense) and, where cached, the real EmbeddingGemma-300M in float32 and bfloat16; each with raw texts and
with a named prompt. The prefix cache is off (``prefix_cache=False`` is the path that must stay bit for bit; the
cache itself agrees to float rounding, checked by tests/test_prefix_cache.py and benchmarks/prefix_cache.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tiny  # noqa: E402

from harrier import Embedder  # noqa: E402

PROBES = list(dict.fromkeys(tiny.TRAIN_TEXT)) + [
    "Photosynthesis converts light energy into chemical energy stored in glucose. " * 6,
    "Die Photosynthese wandelt Lichtenergie in chemische Energie um, die in Glukose gespeichert wird. " * 5,
    "光合作用将光能转化为储存在葡萄糖中的化学能。" * 8,
    "x",
]


def models() -> list[tuple[str, Path, str, str | None]]:
    """(label, path, dtype, prompt name) for each model to probe."""
    root = Path(tempfile.mkdtemp(prefix="harrier-snap-"))
    out = [
        ("tiny-gemma3", tiny.build_gemma3(root / "g"), "float32", "web_search_query"),
        ("tiny-qwen3", tiny.build_qwen3(root / "q"), "float32", "web_search_query"),
        ("tiny-embeddinggemma", tiny.build_gemma3(root / "e", embeddinggemma=True), "float32", "query"),
    ]
    real = Path(os.environ.get("HARRIER_MODELS", Path.home() / ".cache" / "harrier-models")) / "embeddinggemma-300m"
    if (real / "model.safetensors").is_file():
        out += [("embeddinggemma-fp32", real, "float32", "query"), ("embeddinggemma-bf16", real, "bfloat16", "query")]
    else:
        print(f"(real EmbeddingGemma not at {real}: tiny models only)")
    return out


def snapshot() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    arrays = {}
    for label, path, dtype, prompt_name in models():
        m = Embedder.from_pretrained(path, device="cpu", dtype=dtype, prefix_cache=False)
        arrays[f"{label}/raw"] = m.encode(PROBES, progress=False)
        arrays[f"{label}/{prompt_name}"] = m.encode(PROBES, prompt_name=prompt_name, progress=False)
        del m
    return arrays


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path)
    g.add_argument("--compare", type=Path)
    args = ap.parse_args()
    arrays = snapshot()
    if args.save:
        np.savez(args.save, **arrays)
        print(f"saved {len(arrays)} arrays to {args.save}")
        return 0
    before = dict(np.load(args.compare))
    bad = 0
    for key in sorted(set(before) | set(arrays)):
        if key not in before or key not in arrays:
            print(f"{key:40s} only in {'before' if key in before else 'after'}")
            bad += 1
            continue
        same = before[key].shape == arrays[key].shape and np.array_equal(before[key], arrays[key])
        diff = float(np.abs(before[key] - arrays[key]).max()) if before[key].shape == arrays[key].shape else -1
        print(f"{key:40s} {'bit-identical' if same else f'DIFFERS (max abs {diff:.3g})'}")
        bad += not same
    print("all bit-identical" if not bad else f"{bad} arrays differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
