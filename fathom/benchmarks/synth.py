"""A large synthetic corpus grown from real embedded chunks, for the scale benchmark.

Embedding a million chunks is out of reach here (MiniLM ~150 passages/s, so
about two hours per 1M on a quiet machine), and random vectors would be a
poor stand-in: HNSW recall and latency depend on how real embeddings cluster.
So the real chunks of SciFact and CACM, embedded by the real ingestion
pipeline (through the embedding cache), are the seed, and copy ``k`` of
chunk ``i`` is:

* **dense** - the chunk's MiniLM vector plus isotropic Gaussian noise, renormalised:
  a near neighbour of the original (mean cosine reported), so query
  neighbourhoods stay realistic while no two points are equal;
* **sparse** - BM25 of the chunk's tokens with some dropped and some repeated,
  re-encoded exactly as the indexer encodes tokens (so term statistics and
  document lengths vary per copy);
* **payload** - the original's text, section and source (the perturbation lives
  in the vectors), document id ``<original>~k``.

Copy 0 is the original chunk, unchanged. Point ``n`` of the sequence is copy
``n // base`` of chunk ``n % base``, so any prefix of the sequence covers the
real corpus first and then grows it evenly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fathom.benchmarks.quality import build_index
from fathom.ingest.indexer import point_id
from fathom.retrieval.bm25 import Bm25Encoder, Bm25Params, tokenize
from fathom.service.core.config import Settings
from fathom.retrieval.store.contract import DENSE, ChunkPoint, IndexLayout, IndexRef

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Perturbation:
    noise: float = 0.025      # per-dimension std of the Gaussian added to a unit vector (384-d: mean cosine ~0.89)
    drop: float = 0.15        # chance each token of a copy is dropped
    repeat: float = 0.05      # chance each kept token is counted twice
    seed: int = 13


@dataclass
class BaseCorpus:
    """Real chunks: their stored MiniLM vectors, BM25 tokens and the payload fields a copy inherits."""

    dense: np.ndarray                  # (n, dim) float32, unit length
    tokens: list[list[str]]            # tokenize(section + "\n" + text), as the indexer does
    payloads: list[dict[str, object]]  # document_id, chunk_index, text, section, title, source
    avgdl: float
    dense_model: str

    def __len__(self) -> int:
        return len(self.tokens)


def no_rerank_settings(settings: Settings) -> Settings:
    """The scale corpus carries no mpnet vectors (they would double its memory): MiniLM and BM25 only."""
    return settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": "none"}),
                                       "ingest": settings.ingest.model_copy(update={"embed_mpnet": False})})


def load_base(settings: Settings, datasets: Sequence[Path], state_root: Path, log: Log) -> BaseCorpus:
    """Ingest each dataset through the real pipeline (kept in ``state_root``, reused next time) and read it back."""
    dense: list[np.ndarray] = []
    tokens: list[list[str]] = []
    payloads: list[dict[str, object]] = []
    model = ""
    for path in datasets:
        index = build_index(path, no_rerank_settings(settings), state_dir=state_root / path.name, log=log)
        try:
            ref = IndexRef(index.tenant, index.store.live_version(index.tenant) or 1)
            model = index.store.layout(ref).dense_model
            for hit in index.store.scroll(ref, with_vectors=(DENSE,)):
                section = str(hit.payload.get("section") or "")
                dense.append(hit.vectors[DENSE])
                tokens.append(tokenize(f"{section}\n{hit.text}" if section else hit.text))
                payloads.append({"document_id": f"{path.name}:{hit.document_id}", "text": hit.text, "section": section,
                                 "title": hit.payload.get("title"), "source": path.name,
                                 "chunk_index": int(hit.payload.get("chunk_index", 0))})
        finally:
            index.close()
        log(f"  base corpus: {path.name} read back, {len(tokens)} chunks so far")
    vectors = np.stack(dense).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    avgdl = float(np.mean([len(t) for t in tokens])) if tokens else 100.0
    return BaseCorpus(vectors, tokens, payloads, avgdl, model)


class Synthesizer:
    """Generates the deterministic point sequence described in the module docstring, in batches.

    All randomness of copy ``k`` is drawn at once from a generator seeded with
    (seed, k), so a point depends on (seed, copy, chunk) only, never on how the
    sequence is cut into batches or tenants.
    """

    def __init__(self, base: BaseCorpus, perturbation: Perturbation = Perturbation(), bm25: Bm25Params = Bm25Params()):
        if not len(base):
            raise ValueError("empty base corpus")
        self.base = base
        self.p = perturbation
        self.encoder = Bm25Encoder(bm25)
        lengths = np.array([len(t) for t in base.tokens], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._draws: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def layout(self) -> IndexLayout:
        return IndexLayout(dense_dim=int(self.base.dense.shape[1]), dense_model=self.base.dense_model,
                           bm25_k1=self.encoder.params.k1, bm25_b=self.encoder.params.b, bm25_avgdl=self.base.avgdl,
                           build={"synthetic": True, **asdict(self.p)})

    def _copy_draws(self, copy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dense noise, token-drop draws, token-repeat draws) of one copy; the last copy's are kept."""
        if self._draws is None or self._draws[0] != copy:
            rng = np.random.default_rng([self.p.seed, copy])
            noise = rng.standard_normal(self.base.dense.shape, dtype=np.float32) * np.float32(self.p.noise)
            total = int(self._offsets[-1])
            self._draws = (copy, noise, rng.random(total), rng.random(total))
        return self._draws[1], self._draws[2], self._draws[3]

    def dense(self, copy: int, rows: np.ndarray) -> np.ndarray:
        vectors = self.base.dense[rows]
        if copy == 0:
            return vectors.copy()
        out = vectors + self._copy_draws(copy)[0][rows]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def tokens(self, copy: int, row: int) -> list[str]:
        original = self.base.tokens[row]
        if copy == 0 or not original:
            return original
        _, drop, repeat = self._copy_draws(copy)
        at = int(self._offsets[row])
        kept = [t for t, u in zip(original, drop[at:at + len(original)]) if u >= self.p.drop] or original[:1]
        return kept + [t for t, u in zip(kept, repeat[at:at + len(kept)]) if u < self.p.repeat]

    def _spans(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """(copy, base rows) runs covering sequence positions ``start`` to ``stop`` (exclusive)."""
        n = len(self.base)
        for copy in range(start // n, (stop - 1) // n + 1):
            yield copy, np.arange(max(start, copy * n) - copy * n, min(stop, (copy + 1) * n) - copy * n)

    def points(self, tenant: str, start: int, stop: int) -> list[ChunkPoint]:
        """Points ``start`` to ``stop`` (exclusive) of the sequence, written for ``tenant``."""
        out: list[ChunkPoint] = []
        for copy, rows in self._spans(start, stop):
            vectors = self.dense(copy, rows)
            for j, row in enumerate(rows.tolist()):
                base = self.base.payloads[row]
                doc_id = f"{base['document_id']}~{copy}" if copy else str(base["document_id"])
                tokens = self.tokens(copy, row)
                payload = {**base, "tenant_id": tenant, "document_id": doc_id, "doc_version": 1,
                           "bm25_len": len(tokens), "synthetic_copy": copy}
                out.append(ChunkPoint(id=point_id(tenant, doc_id, 1, int(base["chunk_index"])), dense=vectors[j],
                                      sparse=self.encoder.encode_tokens(tokens, self.base.avgdl), payload=payload))
        return out

    def batches(self, tenant: str, start: int, stop: int, size: int) -> Iterator[list[ChunkPoint]]:
        for lo in range(start, stop, size):
            yield self.points(tenant, lo, min(stop, lo + size))

    def token_lists(self, start: int, stop: int) -> list[list[str]]:
        """The BM25 tokens of points ``start`` to ``stop``, exactly as written (for the rank-bm25 baseline)."""
        return [self.tokens(copy, row) for copy, rows in self._spans(start, stop) for row in rows.tolist()]


def mean_copy_cosine(synth: Synthesizer, copy: int = 1, sample: int = 1000) -> float:
    """How close a perturbed copy stays to its original (reported beside the noise level)."""
    rows = np.arange(min(sample, len(synth.base)))
    return float(np.mean(np.sum(synth.dense(copy, rows) * synth.base.dense[rows], axis=1)))
