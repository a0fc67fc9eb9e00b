"""Serving-side bi-encoder: onnxruntime + ``tokenizers`` only.

The service and the indexer import this module, so it must never pull torch,
transformers or sentence-transformers in (``tests/e2e/test_no_torch.py`` enforces
that): those cost ~7 s of import and ~400 MB of memory per process. The ONNX
graphs return ``last_hidden_state``; mean pooling and L2 normalisation happen
here in numpy, exactly as sentence-transformers' Pooling + Normalize modules do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from fathom.retrieval.models.specs import MANIFEST, ONNX_FP32, ONNX_INT8, TOKENIZER, ModelSpec
from fathom.config import Settings, get_settings

log = logging.getLogger(__name__)


class ModelNotPreparedError(RuntimeError):
    """The ONNX files for a model are missing from the model cache."""


def make_session(path: Path, threads: int, *, allow_spinning: bool = False) -> ort.InferenceSession:
    """One CPU session per model: intra-op threads as configured, no inter-op
    parallelism (the graphs are sequential) and every graph optimisation on.

    Spinning is off by default: a spinning pool keeps its threads busy after
    each run, which on a small machine serving concurrent requests takes the
    cores away from everything else (see ``ModelSettings.allow_spinning``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def configure_tokenizer(tokenizer: Tokenizer, max_length: int | None) -> Tokenizer:
    """Set truncation once, padding off; the tokenizer is never mutated afterwards.

    ``tokenizer.json`` files ship with their own truncation/padding (128 tokens,
    fixed padding for these models), which would silently change results, so both
    are reset. Configuring at load time only is what makes concurrent
    ``encode_batch`` calls safe: the Rust object is only read after this.
    """
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length)
    return tokenizer


def pad_batch(encodings: Sequence[Encoding], pad_id: int, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest member and return only the inputs the
    ONNX graph declares (MPNet has no ``token_type_ids``)."""
    width = max(len(e.ids) for e in encodings)
    arrays = {
        "input_ids": np.full((len(encodings), width), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
        "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64),
    }
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        arrays["input_ids"][row, :n] = enc.ids
        arrays["attention_mask"][row, :n] = enc.attention_mask
        arrays["token_type_ids"][row, :n] = enc.type_ids
    return {name: arrays[name] for name in input_names}


def mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask-weighted mean over tokens, then unit length (sentence-transformers'
    Pooling(mean) + Normalize), so cosine similarity is a dot product."""
    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class SpanJob:
    """One token sequence to run through the encoder and the token spans to mean-pool from its states.

    ``ids`` already holds the special tokens; ``spans`` are ``[start, end)``
    token positions. A span covering the whole sequence is exactly what
    :meth:`OnnxEmbedder.embed` pools, so one pass can give a passage's own
    vector or the vectors of pieces of it (late chunking).
    """

    ids: np.ndarray
    spans: tuple[tuple[int, int], ...]


def batches_by_tokens(lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Indices grouped longest first, each group at most ``max_tokens`` once padded (and ``max_rows`` rows).

    A fixed row count pads a batch of 512-token windows to 16k tokens and a
    batch of 20-token titles to almost nothing; a token budget keeps every
    encoder call about the same size, which is what the runtime is fastest at.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < max_rows and lengths[out[-1][0]] * (len(out[-1]) + 1) <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


class OnnxEmbedder:
    """Sentence embeddings from an exported bi-encoder; safe to share between threads."""

    def __init__(self, spec: ModelSpec, model_dir: Path, *, quantized: bool = True, threads: int = 2,
                 allow_spinning: bool = False, batch_tokens: int = 256) -> None:
        self.spec = spec
        self.batch_tokens = batch_tokens
        self.dim = spec.dim
        self.max_length = spec.max_seq_len
        self.quantized = quantized
        self.model_path = model_dir / (ONNX_INT8 if quantized else ONNX_FP32)
        self._session = make_session(self.model_path, threads, allow_spinning=allow_spinning)
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_name = self._session.get_outputs()[0].name
        out_dim = self._session.get_outputs()[0].shape[-1]
        if out_dim != spec.dim:
            raise ValueError(f"{self.model_path} outputs {out_dim}-d vectors, spec {spec.name} says {spec.dim}")
        tokenizer_file = str(model_dir / TOKENIZER)
        self._tokenizer = configure_tokenizer(Tokenizer.from_file(tokenizer_file), spec.max_seq_len)
        self._counter = configure_tokenizer(Tokenizer.from_file(tokenizer_file), None)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array of unit vectors.

        Texts are grouped by token length so each batch pads to near its own
        width (padding costs as much compute as real tokens), at most
        ``batch_size`` texts and ``batch_tokens`` padded tokens per call; rows
        come back in the caller's order.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        out = np.empty((len(encodings), self.dim), dtype=np.float32)
        for rows in batches_by_tokens([len(e.ids) for e in encodings], self.batch_tokens, batch_size):
            feed = pad_batch([encodings[i] for i in rows], self.spec.pad_id, self._input_names)
            (hidden,) = self._session.run([self._output_name], feed)
            out[rows] = mean_pool_normalise(hidden, feed["attention_mask"])
        return out

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """Encodings without truncation, with character offsets: one pass per text gives the token count of any
        span of it (chunkers count from offsets instead of re-tokenising every candidate piece)."""
        return self._counter.encode_batch(list(texts))

    def pool_spans(self, jobs: Sequence[SpanJob], max_batch_tokens: int | None = None,
                   max_rows: int = 64) -> list[np.ndarray]:
        """Mean token state over each span of each job, ``(len(spans), dim)`` per job, not normalised.

        Jobs are batched by a padded-token budget, longest first. Sequences may
        be longer than ``max_length`` (up to the model's positions): a late
        chunker encodes a whole section once and pools its sentences and
        chunks from the same states.
        """
        out: list[np.ndarray] = [np.empty((0, self.dim), dtype=np.float32)] * len(jobs)
        for rows in batches_by_tokens([len(j.ids) for j in jobs], max_batch_tokens or self.batch_tokens, max_rows):
            width = len(jobs[rows[0]].ids)
            ids = np.full((len(rows), width), self.spec.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(jobs[i].ids)
                ids[r, :n] = jobs[i].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = self._session.run([self._output_name], {k: feed[k] for k in self._input_names})
            for r, i in enumerate(rows):
                states = hidden[r]
                out[i] = np.stack([states[a:b].mean(axis=0) if b > a else np.zeros(self.dim, dtype=np.float32)
                                   for a, b in jobs[i].spans]).astype(np.float32, copy=False)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One ``(dim,)`` vector; queries are embedded exactly like passages (symmetric model)."""
        return self.embed([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts including special tokens and without truncation, so a
        chunker can tell how far a text overshoots ``max_length``."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]


def read_manifest(model_dir: Path) -> dict:
    """The provenance/verification record ``prepare`` wrote beside the ONNX files."""
    return json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))


def load_embedder(spec: ModelSpec, settings: Settings | None = None, *, quantized: bool | None = None) -> OnnxEmbedder:
    """Open a prepared embedder from the model cache.

    The int8 file is served only if ``prepare`` verified it against torch
    (``int8_ok`` in the manifest); otherwise fp32 is served with a warning,
    because a silently degraded embedder is worse than a slower one.
    """
    settings = settings or get_settings()
    model_dir = spec.dir(settings.model_dir)
    missing = [name for name in (ONNX_FP32, TOKENIZER, MANIFEST) if not (model_dir / name).is_file()]
    if missing:
        raise ModelNotPreparedError(
            f"Model {spec.name} is not prepared ({', '.join(missing)} missing in {model_dir}); "
            "run `fathom models prepare` first."
        )
    want_int8 = settings.models.quantized if quantized is None else quantized
    if want_int8 and not (read_manifest(model_dir).get("int8_ok") and (model_dir / ONNX_INT8).is_file()):
        log.warning("int8 %s did not pass verification or is missing; serving fp32 from %s", spec.name, model_dir)
        want_int8 = False
    return OnnxEmbedder(spec, model_dir, quantized=want_int8, threads=settings.models.threads,
                        allow_spinning=settings.models.allow_spinning, batch_tokens=settings.models.embed_batch_tokens)
