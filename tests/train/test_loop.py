"""The training loop end to end on a tiny random model: resume after a stop reproduces the uninterrupted losses
exactly, and the export loads in SentenceTransformer() with our runtime's embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import TEXTS

from harrier import Embedder
from harrier.train import config as train_config
from harrier.train.export import CONFIG_FILE
from harrier.train.loop import train


def _data(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"query": TEXTS[i], "positive": TEXTS[(i + 6) % 12], "negatives": [TEXTS[(i + 3) % 12]],
             "instruction": "Retrieve parallel sentences"} for i in range(12)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{broken\n", encoding="utf-8")
    return path


def _cfg(model_dir, data, out, **run):
    raw = {
        "model": {"init": str(model_dir), "max_length": 64},
        "data": {"datasets": [{"path": str(data)}], "negatives_per_query": 1, "seed": 3},
        "loss": {"temperature": 0.05, "symmetric": True, "fn_margin": 0.0},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "schedule": "cosine"},
        "run": {"output": str(out), "steps": 6, "batch_size": 4, "budget_tokens": 24, "grad_cache": True,
                "checkpoint_every": 0, "progress": False, **run},
    }
    return train_config.from_dict(raw)


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_resume_reproduces_losses_and_export_loads_in_sentence_transformers(tiny_gemma3_dir, tmp_path):
    data = _data(tmp_path)
    full_out = tmp_path / "full"
    exported = train(_cfg(tiny_gemma3_dir, data, full_out))
    full = _losses(full_out)
    assert len(full) == 6 and all(np.isfinite(full))

    split_out = tmp_path / "split"
    assert train(_cfg(tiny_gemma3_dir, data, split_out, stop_after=3)) is None
    assert (split_out / "checkpoints" / "latest").read_text().strip() == "step-0000003"
    assert len(_losses(split_out)) == 3
    resumed_export = train(_cfg(tiny_gemma3_dir, data, split_out), resume=True)
    assert _losses(split_out) == full  # bit-exact: same data order, optimizer, scheduler, RNG

    row = json.loads((full_out / "train_log.jsonl").read_text().splitlines()[0])
    assert {"loss", "contrastive", "lr", "tokens_per_s", "mem_gb", "dataset"} <= set(row)
    assert json.loads((exported / CONFIG_FILE).read_text())["run"]["steps"] == 6
    # texts were cut at model.max_length=64 in training; the export declares the init model's own limit
    own = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu").max_length
    assert json.loads((exported / "sentence_bert_config.json").read_text())["max_seq_length"] == own != 64

    from sentence_transformers import SentenceTransformer

    ours = Embedder.from_pretrained(exported, device="cpu", dtype="float32")
    st = SentenceTransformer(str(exported), device="cpu")
    texts = TEXTS[:6]
    a = ours.encode(texts, prompt_name="bitext_query")
    b = st.encode(texts, prompt_name="bitext_query", convert_to_numpy=True)
    np.testing.assert_allclose(a, b, atol=2e-5)
    before = Embedder.from_pretrained(tiny_gemma3_dir, device="cpu", dtype="float32").encode(texts)
    assert np.abs(ours.encode(texts) - before).max() > 1e-3  # training changed the model
    again = Embedder.from_pretrained(resumed_export, device="cpu", dtype="float32").encode(texts)
    np.testing.assert_array_equal(again, ours.encode(texts))


def test_config_errors(tiny_gemma3_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown keys in 'run'"):
        train_config.from_dict({"model": {"init": "x"}, "data": {"datasets": [{"path": "y"}]},
                                "run": {"output": "o", "stpes": 3}})
    raw = {"model": {"init": "x"}, "data": {"datasets": [{"path": "y"}]}, "run": {"output": "o"}}
    cfg = train_config.from_dict(train_config.apply_overrides(raw, ["optim.lr=1e-5", "run.steps=7"]))
    assert cfg.optim.lr == 1e-5 and cfg.run.steps == 7
    with pytest.raises(ValueError, match="key.path=value"):
        train_config.apply_overrides(raw, ["optim.lr"])


def test_resume_with_teacher_and_projection(tiny_gemma3_dir, tiny_embeddinggemma_dir, tmp_path):
    data = _data(tmp_path)

    def cfg(out, **run):
        base = _cfg(tiny_gemma3_dir, data, out, steps=4, **run)
        raw = train_config.to_dict(base)
        raw["teacher"] = {"path": str(tiny_embeddinggemma_dir), "query_prompt": "task: search result | query: "}
        raw["loss"].update(kl_weight=0.5, align_weight=0.5)
        return train_config.from_dict(raw)

    train(cfg(tmp_path / "full"))
    assert train(cfg(tmp_path / "split", stop_after=2)) is None
    train(cfg(tmp_path / "split"), resume=True)
    full, split = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert len(full) == 4 and split == full
    row = json.loads((tmp_path / "full" / "train_log.jsonl").read_text().splitlines()[-1])
    assert row["align"] > 0 and row["kl"] > 0


def _sts17_root(root):
    """A data root holding a tiny STS17 en-en track in SemEval's layout (the two zips ``loaders.sts17`` reads)."""
    import zipfile

    folder = root / "sts17-semeval"
    folder.mkdir(parents=True)
    pairs = [(TEXTS[i], TEXTS[(i + k) % 12], 5.0 - k) for i in range(6) for k in (0, 1, 3, 5)]
    with zipfile.ZipFile(folder / "Sts2017.eval.v1.1.zip", "w") as z:
        z.writestr("STS2017.eval.v1.1/STS.input.track5.en-en.txt", "\n".join(f"{a}\t{b}" for a, b, _ in pairs))
    with zipfile.ZipFile(folder / "Sts2017.gs.zip", "w") as z:
        z.writestr("STS2017.gs/STS.gs.track5.en-en.txt", "\n".join(str(s) for _, _, s in pairs) + "\n")
    return root


def test_periodic_evaluation_is_logged(tiny_gemma3_dir, tmp_path, monkeypatch):
    from harrier.eval.tasks import SUITES

    monkeypatch.setitem(SUITES, "tiny-test", (("STS17", ("en-en",), None),))
    monkeypatch.chdir(tmp_path)  # no ../shared/data and no HARRIER_DATA: only run.eval_data names the data
    monkeypatch.delenv("HARRIER_DATA", raising=False)
    out = tmp_path / "ev"
    train(_cfg(tiny_gemma3_dir, _data(tmp_path), out, steps=2, eval_every=5, eval_at_start=True,
               eval_suite="tiny-test", eval_data=str(_sts17_root(tmp_path / "data"))))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [0, 2]  # at start and at the last step
    assert set(evals[0]["eval"]) == {"STS17", "mean"} and -100 <= evals[0]["eval"]["mean"] <= 100


def test_precomputed_teacher_scores_drive_kl(tiny_gemma3_dir, tmp_path):
    from harrier.train.loop import step_texts
    from harrier.train.records import parse_record

    path = tmp_path / "scored.jsonl"
    rows = [{"query": TEXTS[i], "positive": TEXTS[i + 6], "negatives": [TEXTS[(i + 1) % 6], TEXTS[(i + 2) % 6]],
             "teacher_scores": [0.9, 0.2, 0.1]} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recs = [parse_record(r) for r in rows[:2]]
    st = step_texts(recs, np.random.default_rng(0), negatives=1)
    assert st.group == [[0, 1], [2, 3]] and len(st.scores) == 2 and st.scores[0][0] == 0.9
    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, path, tmp_path / "kl", steps=2))
    raw["loss"].update(contrastive_weight=0.0, kl_weight=1.0)
    train(train_config.from_dict(raw))
    row = json.loads((tmp_path / "kl" / "train_log.jsonl").read_text().splitlines()[0])
    assert row["kl"] > 0 and "contrastive" not in row


def test_freeze_embeddings(tiny_gemma3_dir, tmp_path):
    from safetensors.torch import load_file

    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, _data(tmp_path), tmp_path / "fz", steps=2))
    raw["model"]["freeze_embeddings"] = True
    out = train(train_config.from_dict(raw))
    before, after = load_file(tiny_gemma3_dir / "model.safetensors"), load_file(out / "model.safetensors")
    key = next(k for k in before if k.endswith("embed_tokens.weight"))
    assert torch.equal(before[key], after[key.removeprefix("model.")] if key not in after else after[key])
    layer = next(k for k in after if "q_proj" in k)
    assert not torch.equal(before.get(layer, before.get("model." + layer)), after[layer])


def test_datasets_can_set_the_teachers_prompts(tiny_gemma3_dir, tiny_embeddinggemma_dir, tmp_path, monkeypatch):
    from harrier.train.teacher import Teacher

    seen: list[tuple[bool, str | None]] = []
    embed = Teacher.embed

    def spy(self, texts, *, query, prompt=None):
        seen.append((query, prompt))
        return embed(self, texts, query=query, prompt=prompt)

    monkeypatch.setattr(Teacher, "embed", spy)
    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, _data(tmp_path), tmp_path / "out", steps=2))
    raw["teacher"] = {"path": str(tiny_embeddinggemma_dir)}
    raw["data"]["datasets"][0].update(teacher_query_prompt="task: search result | query: ",
                                      teacher_document_prompt="title: none | text: ")
    raw["loss"].update(kl_weight=0.5)
    train(train_config.from_dict(raw))
    assert seen[:2] == [(True, "task: search result | query: "), (False, "title: none | text: ")]
    del raw["teacher"]
    with pytest.raises(ValueError, match=r"datasets\[0\] sets teacher prompts but the config has no teacher"):
        train_config.from_dict(raw)


def test_symmetric_datasets_give_the_students_documents_the_instruction(tiny_gemma3_dir, tiny_embeddinggemma_dir,
                                                                       tmp_path, monkeypatch):
    from harrier.train import loop
    from harrier.train.records import parse_record
    from harrier.train.teacher import Teacher

    prefix = "Instruct: Retrieve parallel sentences\nQuery: "
    recs = [parse_record({"query": TEXTS[i], "positive": TEXTS[i + 6], "negatives": [TEXTS[i + 1]],
                          "instruction": "Retrieve parallel sentences"}) for i in range(2)]
    plain = loop.step_texts(recs, np.random.default_rng(0), negatives=1)
    sym = loop.step_texts(recs, np.random.default_rng(0), negatives=1, symmetric=True)
    assert plain.docs == plain.raw_docs == sym.raw_docs == [TEXTS[6], TEXTS[1], TEXTS[7], TEXTS[2]]
    assert sym.docs == [prefix + t for t in sym.raw_docs] and sym.queries == plain.queries

    made, teacher_docs = [], []
    step_texts, embed = loop.step_texts, Teacher.embed
    monkeypatch.setattr(loop, "step_texts", lambda *a, **k: made.append(step_texts(*a, **k)) or made[-1])

    def spy(self, texts, *, query, prompt=None):
        if not query:
            teacher_docs.append(list(texts))
        return embed(self, texts, query=query, prompt=prompt)

    monkeypatch.setattr(Teacher, "embed", spy)
    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, _data(tmp_path), tmp_path / "out", steps=2))
    raw["teacher"] = {"path": str(tiny_embeddinggemma_dir)}
    raw["data"]["datasets"][0]["symmetric"] = True
    raw["loss"].update(kl_weight=0.5)
    train(train_config.from_dict(raw))
    assert len(made) == 2 and all(d == prefix + r for st in made for d, r in zip(st.docs, st.raw_docs, strict=True))
    assert teacher_docs == [st.raw_docs for st in made]  # the teacher embeds raw texts under its own prompts

    raw["data"]["datasets"].append(dict(raw["data"]["datasets"][0]))
    with pytest.raises(ValueError, match="two data.datasets entries yield a dataset named 'pairs'"):
        train(train_config.from_dict(raw))


def test_a_later_stage_starts_from_the_saved_projection(tiny_gemma3_dir, tiny_embeddinggemma_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from harrier.train.distributed import DistInfo
    from harrier.train.loop import build_models

    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, _data(tmp_path), tmp_path / "s1", steps=2))
    raw["teacher"] = {"path": str(tiny_embeddinggemma_dir)}
    raw["loss"].update(align_weight=1.0)
    train(train_config.from_dict(raw))
    saved = load_file(tmp_path / "s1" / "projection.safetensors")
    fresh = build_models(train_config.from_dict(raw), DistInfo())[2]
    assert not torch.equal(fresh.weight.detach(), saved["weight"])  # training moved it off the fresh init

    raw["teacher"]["projection"] = str(tmp_path / "s1" / "projection.safetensors")
    assert torch.equal(build_models(train_config.from_dict(raw), DistInfo())[2].weight.detach(), saved["weight"])
    save_file({"weight": saved["weight"][:, :3].contiguous()}, tmp_path / "bad.safetensors")
    raw["teacher"]["projection"] = str(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="bad.safetensors holds .* this student/teacher pair needs"):
        build_models(train_config.from_dict(raw), DistInfo())
    raw["loss"]["align_weight"] = 0.0
    with pytest.raises(ValueError, match="teacher.projection is set but loss.align_weight is 0"):
        train_config.from_dict(raw)


def test_yaml_on_off_and_unknown_choices(tiny_gemma3_dir, tmp_path):
    raw = train_config.to_dict(_cfg(tiny_gemma3_dir, _data(tmp_path), tmp_path / "out", steps=2))
    for value, expected in (("on", "on"), ("off", "off"), ("auto", "auto")):  # YAML 1.1 reads on/off as booleans
        cfg = train_config.from_dict(train_config.apply_overrides(raw, [f"run.bf16={value}"]))
        assert cfg.run.bf16 == expected
    with pytest.raises(ValueError, match="run.parallel must be one of 'auto', 'none', 'ddp', 'fsdp', got 'fsdp2'"):
        train_config.from_dict(train_config.apply_overrides(raw, ["run.parallel=fsdp2"]))
    with pytest.raises(ValueError, match="run.grad_cache must be true or false, got 'maybe'"):
        train_config.from_dict(train_config.apply_overrides(raw, ["run.grad_cache=maybe"]))
    raw["data"]["datasets"][0]["symmetric"] = "yes please"
    with pytest.raises(ValueError, match=r"data.datasets\[0\].symmetric must be true or false"):
        train_config.from_dict(raw)


@pytest.mark.parametrize("damage", ["truncate-model", "garbage-state"])
def test_resume_skips_a_damaged_latest_checkpoint(tiny_gemma3_dir, tmp_path, caplog, damage):
    data = _data(tmp_path)
    full_out = tmp_path / "full"
    train(_cfg(tiny_gemma3_dir, data, full_out))
    full = _losses(full_out)

    out = tmp_path / "split"
    assert train(_cfg(tiny_gemma3_dir, data, out, checkpoint_every=2, stop_after=4)) is None
    ckpts = out / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-0000004"
    if damage == "truncate-model":
        model_pt = ckpts / "step-0000004" / "model.pt"
        model_pt.write_bytes(model_pt.read_bytes()[: model_pt.stat().st_size // 2])
    else:
        (ckpts / "step-0000004" / "train_state.pt").write_bytes(b"\x80\x04garbage" * 100)
    with caplog.at_level("WARNING"):
        train(_cfg(tiny_gemma3_dir, data, out, checkpoint_every=2), resume=True)
    assert "step-0000004 is damaged" in caplog.text
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # resumed from step 2: its rows of steps 3-4 replaced
    assert [r["loss"] for r in rows] == full  # and reproduced the uninterrupted run from there, bit for bit


def test_resume_with_every_checkpoint_damaged_is_one_error(tiny_gemma3_dir, tmp_path):
    from harrier.train.checkpoint import CheckpointError

    data = _data(tmp_path)
    out = tmp_path / "run"
    train(_cfg(tiny_gemma3_dir, data, out, checkpoint_every=2, stop_after=2))
    (out / "checkpoints" / "step-0000002" / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint .*model.pt"):
        train(_cfg(tiny_gemma3_dir, data, out), resume=True)
