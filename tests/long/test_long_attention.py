"""32k-token inputs in bounded memory: attention rows against an explicit float64 reference, the chunked long
path against the plain path and sentence-transformers, and peak memory growing linearly with length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from long_helpers import decoder_config, random_ids, random_model

from harrier import Embedder
from harrier.models import long
from harrier.models.layers import varlen_attention
from harrier.packing import SeqGroups, pack

COS_MIN = 0.99999


def reference_rows(q_THE, k_TKE, v_TKE, rows, *, causal: bool, window: int | None, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v for the given query rows, scores materialised in float64: [len(rows), H, E]."""
    heads, kv_heads = q_THE.shape[1], k_TKE.shape[1]
    k = k_TKE.double().repeat_interleave(heads // kv_heads, dim=1)
    v = v_TKE.double().repeat_interleave(heads // kv_heads, dim=1)
    pos = torch.arange(k.shape[0])
    out = []
    for r in rows:
        keep = torch.ones_like(pos, dtype=torch.bool)
        if causal:
            keep &= pos <= r
        if window is not None:
            keep &= (r - pos).abs() < window
        scores_HL = torch.einsum("he,lhe->hl", q_THE[r].double(), k[keep]) * scale
        out.append(torch.einsum("hl,lhe->he", scores_HL.softmax(-1), v[keep]))
    return torch.stack(out)


@pytest.mark.parametrize(("causal", "window"), [(True, None), (False, 64)], ids=["causal-full", "bidir-window"])
def test_attention_at_32k_equals_reference_rows(causal, window):
    length, gen = 32_768, torch.Generator().manual_seed(0)
    q = torch.randn(length, 2, 8, generator=gen)
    k, v = torch.randn(length, 1, 8, generator=gen), torch.randn(length, 1, 8, generator=gen)
    out = varlen_attention(q, k, v, SeqGroups.from_lengths([length]), causal=causal, window=window, scale=0.35)
    rows = [0, 1, 2047, 2048, 9_000, 16_383, 16_384, 30_001, length - 2, length - 1]
    ref = reference_rows(q, k, v, rows, causal=causal, window=window, scale=0.35)
    got = out[rows].double()
    cos = torch.nn.functional.cosine_similarity(got.flatten(1), ref.flatten(1), dim=-1)
    assert cos.min() >= COS_MIN, cos
    assert (got - ref).abs().max() < 1e-4


@pytest.mark.parametrize("sandwich", [True, False], ids=["gemma3", "qwen3"])
def test_long_path_equals_plain_path(sandwich, monkeypatch):
    cfg = decoder_config(num_layers=1, layer_types=("full_attention",), num_heads=1, sandwich_norms=sandwich,
                         norm_offset=1.0 if sandwich else 0.0, embed_scale=8.0 if sandwich else None,
                         activation="gelu_tanh" if sandwich else "silu")
    model = random_model(cfg)
    # two sequences past the threshold together, one short: attention stays per sequence on the long path
    batch = pack([random_ids(7_000, 300, seed=1), random_ids(3, 300, seed=2), random_ids(5_000, 300, seed=3)])
    calls = []
    monkeypatch.setattr(long, "LONG_TOKENS", 8_192)  # the batch's 12,003 tokens are past it
    monkeypatch.setattr(long, "layer_forward_chunked", _spy(long.layer_forward_chunked, calls))
    with torch.inference_mode():
        chunked = model(batch)
        assert calls, "the long path was not taken"
        monkeypatch.setattr(long, "LONG_TOKENS", 10**9)
        plain = model(batch)
    assert len(calls) == 1
    assert torch.nn.functional.cosine_similarity(chunked, plain).min() >= COS_MIN


def test_long_path_off_for_training_and_short_batches(monkeypatch):
    monkeypatch.setattr(long, "LONG_TOKENS", 100)
    with torch.inference_mode():
        assert long.use_long_path(101) and not long.use_long_path(100)
    with torch.enable_grad():
        assert not long.use_long_path(10_000)


@pytest.mark.parametrize("fixture", ["tiny_gemma3_dir", "tiny_embeddinggemma_dir", "tiny_qwen3_dir"])
def test_long_path_matches_sentence_transformers(fixture, request, monkeypatch):
    from sentence_transformers import SentenceTransformer

    path = request.getfixturevalue(fixture)
    texts = [" ".join(tiny.TRAIN_TEXT[:10] * 3), "short text", " ".join(tiny.TRAIN_TEXT[3:12] * 2)]
    ours = Embedder.from_pretrained(path, device="cpu", dtype="float32")
    monkeypatch.setattr(long, "LONG_TOKENS", 600)
    monkeypatch.setattr(long, "TOKEN_CHUNK", 257)
    calls = []
    monkeypatch.setattr(long, "layer_forward_chunked", _spy(long.layer_forward_chunked, calls))
    got = ours.encode(texts, prompt_name="sts_query" if "sts_query" in ours.prompts else None,
                      batch_tokens=100_000)
    assert calls and sum(len(x) for x in ours.tokenize(texts)) > 600
    st = SentenceTransformer(str(path), device="cpu")
    ref = st.encode(texts, prompt_name="sts_query" if "sts_query" in ours.prompts else None, batch_size=8)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= COS_MIN, cos


def _spy(fn, calls: list):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapped


MEMORY_PROBE = """
import json, sys
from pathlib import Path
import torch
sys.path.insert(0, {helpers!r})
from long_helpers import decoder_config, random_ids, random_model
from harrier.packing import pack
from harrier.models import long

def status(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024

torch.set_num_threads(2)
long.LONG_TOKENS = {threshold}
cfg = decoder_config(num_layers=1, layer_types=("full_attention",), num_heads=1, hidden_size=256,
                     intermediate_size=1024)
model = random_model(cfg)
batch = pack([random_ids({length}, 300)])
with torch.inference_mode():
    model(pack([random_ids(64, 300)]))  # warm-up: one-time allocations are not the input's
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
    model(batch)
print(json.dumps(status("VmHWM") - before))
"""


def peak_mib(length: int, threshold: int) -> float:
    """Peak RSS (MiB) of one forward of ``length`` tokens above the loaded model and input, in a fresh process."""
    code = MEMORY_PROBE.format(helpers=str(Path(__file__).parent), length=length, threshold=threshold)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_grows_linearly_with_length():
    """16k and 32k tokens through the long path (threshold 8,192): 32k costs at most about twice 16k (linear;
    quadratic would be 4x), far below one [32k, 32k] fp32 score matrix (4 GiB), and below the plain path at 16k."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    half, full, plain_half = peak_mib(16_384, 8_192), peak_mib(32_768, 8_192), peak_mib(16_384, 10**9)
    peaks = {"long-16k": half, "long-32k": full, "plain-16k": plain_half}
    assert full < 2.6 * half, peaks
    assert full < 200, peaks  # MiB; q, k, v, attention output and residual stream at 32k are ~50 MiB
    assert full < plain_half, peaks  # measured 94 vs 275 MiB


@pytest.mark.parametrize("bf16", [False, True], ids=["attention-fp32", "attention-bf16"])
def test_long_path_of_an_int8_model_equals_its_ordinary_path(tiny_gemma3_dir, bf16, monkeypatch):
    """The chunked path allocates q/k/v in attention's dtype (bf16 in an int8 model where bf16 is the faster) and
    casts attention's output back before o_proj, as the ordinary path does."""
    from harrier import loading

    monkeypatch.setattr(loading, "cpu_bf16_is_faster", lambda: bf16)
    m = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="int8", prefix_cache=False)
    assert {x.self_attn.attn_dtype for x in m.model.backbone.layers} == {torch.bfloat16 if bf16 else None}
    texts = [" ".join(tiny.TRAIN_TEXT[:10] * 3), "short text", " ".join(tiny.TRAIN_TEXT[3:12] * 2)]
    plain = m.encode(texts, prompt_name="web_search_query", batch_tokens=100_000)
    monkeypatch.setattr(long, "LONG_TOKENS", 600)
    monkeypatch.setattr(long, "TOKEN_CHUNK", 257)
    calls = []
    monkeypatch.setattr(long, "layer_forward_chunked", _spy(long.layer_forward_chunked, calls))
    chunked = m.encode(texts, prompt_name="web_search_query", batch_tokens=100_000)
    assert calls
    cos = (plain * chunked).sum(1) / np.linalg.norm(plain, axis=1) / np.linalg.norm(chunked, axis=1)
    assert cos.min() >= 0.9999, cos
