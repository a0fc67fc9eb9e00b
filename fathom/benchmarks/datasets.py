"""Read judged datasets in BEIR layout (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fathom.ingest.document import Element, ParsedDocument


@dataclass(frozen=True, slots=True)
class BeirDoc:
    id: str
    title: str
    text: str

    def parsed(self) -> ParsedDocument:
        """A corpus row as a parsed document: the title is the heading its text sits under."""
        title, text = self.title.strip(), self.text.strip()
        elements = []
        if title:
            elements.append(Element(title, "Title", section_path=(), is_heading=True))
        if text:
            elements.append(Element(text, "NarrativeText", section_path=(title,) if title else ()))
        return ParsedDocument(elements=elements, filetype="application/x-beir+json", source_name=self.id,
                              title=title or None, language="en")


@dataclass
class BeirDataset:
    name: str
    root: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]       # query id -> {doc id: grade}

    def corpus(self) -> Iterator[BeirDoc]:
        path = self.root / "corpus.jsonl"
        opener = open if path.exists() else gzip.open
        if not path.exists():
            path = self.root / "corpus.jsonl.gz"
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for line in fh:
                row = json.loads(line)
                yield BeirDoc(str(row["_id"]), row.get("title") or "", row.get("text") or "")

    @property
    def judged_queries(self) -> dict[str, str]:
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    root = Path(root)
    if not (root / "queries.jsonl").exists():
        raise FileNotFoundError(f"{root} is not a BEIR folder (queries.jsonl missing)")
    queries = {}
    with open(root / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    qrels_path = root / "qrels" / f"{split}.tsv"
    with open(qrels_path, encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)  # header
        for qid, did, score in reader:
            if int(score) > 0:
                qrels.setdefault(qid, {})[did] = int(score)
    return BeirDataset(root.name, root, queries, qrels)
