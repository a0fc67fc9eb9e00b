"""Serving-side cross-encoder on onnxruntime (no torch).

The folder comes from :func:`fathom.training.prepare.export_cross_encoder`:
``model.onnx`` (+ ``model.int8.onnx``) and a ``tokenizer.json`` whose padding
entry names the model's pad token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from fathom.retrieval.models.embedder import configure_tokenizer, make_session, pad_batch
from fathom.retrieval.models.specs import ONNX_FP32, ONNX_INT8, TOKENIZER


class OnnxCrossEncoder:
    """Scores (query, passage) pairs with one logit each; safe to share between threads."""

    def __init__(self, model_dir: Path, *, threads: int = 2, quantized: bool = True) -> None:
        int8 = model_dir / ONNX_INT8
        self.model_path = int8 if quantized and int8.is_file() else model_dir / ONNX_FP32
        self._session = make_session(self.model_path, threads)
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_name = self._session.get_outputs()[0].name
        tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER))
        # Pad positions are masked out, so the id only has to be a valid token;
        # the exporter records the real one in tokenizer.json's padding entry.
        self._pad_id = tokenizer.padding["pad_id"] if tokenizer.padding else 0
        self._tokenizer = configure_tokenizer(tokenizer, None)
        self._pair_specials = tokenizer.num_special_tokens_to_add(True)

    def score(self, query: str, passages: Sequence[str], max_length: int = 256, *,
              run_options: ort.RunOptions | None = None) -> np.ndarray:
        """One relevance logit per passage, in the passages' order.

        All pairs go through one ``encode_batch`` and one session run. Only the
        passage side is cut to fit ``max_length`` (HF ``only_second``), so the
        query is seen whole; only a query longer than half the token budget is
        cut (to that half) instead of failing the request as HF would.
        ``run_options`` lets the caller cancel the run from another thread
        (``run_options.terminate = True``): the run then raises instead of
        finishing work nobody will wait for.
        """
        if not passages:
            return np.zeros(0, dtype=np.float32)
        pairs = self._encode_pairs(query, passages, max_length)
        feed = pad_batch(pairs, self._pad_id, self._input_names)
        (logits,) = self._session.run([self._output_name], feed, run_options)
        return logits[:, 0].astype(np.float32)

    def _encode_pairs(self, query: str, passages: Sequence[str], max_length: int) -> list[Encoding]:
        """Tokenise without special tokens, truncate per side, then let the
        tokenizer's own post-processor add [CLS]/[SEP] (or <s>/</s>) and type ids.

        Truncating by hand keeps the shared tokenizer free of per-call state,
        which is what makes concurrent ``score`` calls with different
        ``max_length`` values safe.
        """
        budget = max_length - self._pair_specials
        encoded = self._tokenizer.encode_batch([query, *passages], add_special_tokens=False)
        query_enc = encoded[0]
        if len(query_enc.ids) > budget // 2:
            query_enc.truncate(budget // 2)
        pairs = []
        for passage_enc in encoded[1:]:
            passage_enc.truncate(budget - len(query_enc.ids))
            pairs.append(self._tokenizer.post_process(query_enc, passage_enc, add_special_tokens=True))
        return pairs
