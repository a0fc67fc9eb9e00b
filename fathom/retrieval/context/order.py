"""The order passages are handed to the model in.

* ``score``: best first (the ranked order);
* ``document``: a document's passages together and in reading order,
  documents by their best passage;
* ``edges``: the best passages at both ends and the weakest in the middle, for
  models that attend less to the middle of a long context ("lost in the
  middle", Liu et al. 2023): ranks 1, 3, 5, ... from the front, 2, 4, 6, ...
  from the back.
"""

from __future__ import annotations

from collections.abc import Sequence

from fathom.retrieval.context.types import Order, Passage


def order_passages(passages: Sequence[Passage], order: Order) -> list[Passage]:
    ranked = sorted(passages, key=lambda p: p.rank)
    if order == "score":
        return ranked
    if order == "document":
        first = {}
        for p in ranked:
            first.setdefault(p.document_id, p.rank)
        return sorted(ranked, key=lambda p: (first[p.document_id], p.char_start or 0, p.rank))
    if order == "edges":
        return ranked[0::2] + ranked[1::2][::-1]
    raise ValueError(f"unknown order {order!r}")
