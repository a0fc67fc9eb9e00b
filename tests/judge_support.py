"""A small SciFact *test* slice in BEIR layout (judged queries, their abstracts, distractors), for the judge and
the guard benchmark tests; built in a temp folder from the shared data, never copied into the repo."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from fathom.config import Settings
from fathom.retrieval.models.specs import MINILM


def mini_beir(scifact_dir: Path, root: Path, *, queries: int, distractors: int, seed: int = 5) -> Path:
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    for line in (scifact_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, grade = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(grade)
    qids = sorted(qrels)
    rng.shuffle(qids)
    qids = qids[:queries]
    relevant = {d for q in qids for d in qrels[q]}
    with gzip.open(scifact_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    others = [d for d in docs if d["_id"] not in relevant]
    keep = [d for d in docs if d["_id"] in relevant] + rng.sample(others, distractors)
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep), encoding="utf-8")
    rows = {str(json.loads(x)["_id"]): x for x in (scifact_dir / "queries.jsonl").read_text(encoding="utf-8").splitlines()}
    (root / "queries.jsonl").write_text("".join(rows[q] + "\n" for q in qids), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q in qids for d, g in qrels[q].items()),
        encoding="utf-8")
    return root


def private_settings(base: Settings, home: Path) -> Settings:
    """A private home (index, embedding cache) borrowing the prepared MiniLM; defaults otherwise."""
    (home / "models").mkdir(parents=True)
    (home / "models" / MINILM.name).symlink_to(base.model_dir / MINILM.name)
    return base.model_copy(update={"home": home, "state_dir": None, "registry_url": None,
                                   "models": base.models.model_copy(update={"dir": home / "models"})})
