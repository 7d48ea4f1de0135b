"""Tiny random checkpoints in the harrier Sentence-Transformers layout, built with transformers (offline).

- ``gemma3``: harrier-270m-shaped (causal, all full attention, BOS + EOS appended, last-token pooling, Normalize).
- ``qwen3``: harrier-0.6b-shaped (causal, GQA, q/k norms, EOS appended, last-token pooling, Normalize).
- ``embeddinggemma``: EmbeddingGemma-shaped (bidirectional, sliding window 8 on most layers, local/global rope,
  mean pooling, Dense -> Dense, Normalize).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "how much protein should a female eat",
    "Instruct: Retrieve semantically similar text\nQuery: ",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ",
] * 4

HARRIER_PROMPTS = {
    "web_search_query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\n"
                        "Query: ",
    "sts_query": "Instruct: Retrieve semantically similar text\nQuery: ",
    "bitext_query": "Instruct: Retrieve parallel sentences\nQuery: ",
}


def build_tokenizer(specials: list[str], bos: str | None, eos: str | None, vocab_size: int = 400):
    """A byte-level BPE trained on a few multilingual sentences; post-processor adds bos/eos like the real ones."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    single = " ".join(x for x in (f"{bos}:0" if bos else None, "$A:0", f"{eos}:0" if eos else None) if x)
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, tok.token_to_id(t)) for t in (bos, eos) if t])
    return tok


def _randomize(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (0.0 if p.mean() < 0.5 else 1.0))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)


def _write_st(path: Path, modules: list[tuple[str, str]], prompts: dict[str, str], pooling: str,
              dim: int, include_prompt: bool = True) -> None:
    spec = []
    for i, (kind, sub) in enumerate(modules):
        spec.append({"idx": i, "name": str(i), "path": sub, "type": f"sentence_transformers.models.{kind}"})
        if kind == "Normalize":
            (path / sub).mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(spec, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling == "lasttoken", "include_prompt": include_prompt}))
    (path / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}))


def _save_tokenizer(tok, path: Path, bos: str | None, eos: str, pad: str, max_len: int) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   model_max_length=max_len)
    fast.save_pretrained(path)


def build_gemma3(path: Path, *, embeddinggemma: bool = False, seed: int = 0, dtype=torch.float32,
                 shape: dict | None = None) -> Path:
    """``shape``: config fields that replace the tiny ones (a real model's widths, in benchmarks/gpu_check.py);
    such a model keeps transformers' own initialisation (std 0.02), as the tiny one's larger weights would make
    activations explode over many wide layers."""
    from transformers import Gemma3TextConfig, Gemma3TextModel

    tok = build_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", "<eos>")
    n_layers = (shape or {}).get("num_hidden_layers", 6 if embeddinggemma else 3)
    layer_types = ((["sliding_attention"] * 2 + ["full_attention"]) * 2 if embeddinggemma
                   else ["full_attention"] * n_layers)
    fields = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
        max_position_embeddings=32768, sliding_window=8, layer_types=layer_types,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        use_bidirectional_attention=embeddinggemma, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        dtype=str(dtype).removeprefix("torch."),
    )
    cfg = Gemma3TextConfig(**{**fields, **(shape or {})})
    model = Gemma3TextModel(cfg)
    if shape is None:
        _randomize(model, seed)
    model.to(dtype).save_pretrained(path)
    _save_tokenizer(tok, path, "<bos>", "<eos>", "<pad>", 2048)
    if embeddinggemma:
        gen = torch.Generator().manual_seed(seed + 1)
        from safetensors.torch import save_file

        for sub, (i, o) in (("2_Dense", (64, 96)), ("3_Dense", (96, 64))):
            (path / sub).mkdir()
            (path / sub / "config.json").write_text(json.dumps({"in_features": i, "out_features": o, "bias": False,
                                                                "activation_function":
                                                                    "torch.nn.modules.linear.Identity"}))
            save_file({"linear.weight": (torch.randn(o, i, generator=gen) * 0.1).to(dtype)},
                      path / sub / "model.safetensors")
        prompts = {"query": "task: search result | query: ", "document": "title: none | text: ",
                   "STS": "task: sentence similarity | query: "}
        _write_st(path, [("Transformer", ""), ("Pooling", "1_Pooling"), ("Dense", "2_Dense"),
                         ("Dense", "3_Dense"), ("Normalize", "4_Normalize")], prompts, "mean", 64)
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 2048}))
    else:
        _write_st(path, [("Transformer", ""), ("Pooling", "1_Pooling"), ("Normalize", "2_Normalize")],
                  HARRIER_PROMPTS, "lasttoken", cfg.hidden_size)
    return path


def build_qwen3(path: Path, *, seed: int = 0, dtype=torch.float32, shape: dict | None = None) -> Path:
    """``shape``: as in ``build_gemma3``."""
    from transformers import Qwen3Config, Qwen3Model

    tok = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>")
    fields = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True,
        eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
        bos_token_id=None, dtype=str(dtype).removeprefix("torch."),
    )
    cfg = Qwen3Config(**{**fields, **(shape or {})})
    model = Qwen3Model(cfg)
    if shape is None:
        _randomize(model, seed)
    model.to(dtype).save_pretrained(path)
    _save_tokenizer(tok, path, None, "<|im_end|>", "<|endoftext|>", 2048)
    _write_st(path, [("Transformer", ""), ("Pooling", "1_Pooling"), ("Normalize", "2_Normalize")],
              HARRIER_PROMPTS, "lasttoken", cfg.hidden_size)
    return path


def mixed_texts() -> list[str]:
    """Texts from 1 token to several hundred, in several languages and scripts."""
    base = TRAIN_TEXT[:10]
    long_de = " ".join(base[1] for _ in range(12))
    long_mix = " ".join(base[i % 10] for i in range(30))
    return ["a", "", "Hund", *base, base[0] + " " + base[4], long_de, long_mix, "🙂 ok?", "x " * 150]
