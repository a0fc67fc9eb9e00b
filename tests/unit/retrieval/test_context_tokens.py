"""Where a tokenizer says counts add up (``splits_at_spaces``), they do, on real texts; where the rule does not hold
(a seam at a line break), they do not always: the rule is what makes the sum exact."""

from __future__ import annotations

import random

import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.retrieval.context.tokens import load_tokenizer, seam


@pytest.mark.parametrize("dataset", ["scifact", "cacm"])
def test_cl100k_counts_add_up_at_every_seam_of_real_texts(data_dir, dataset):
    tok = load_tokenizer("cl100k_base")
    assert tok.splits_at_spaces and not load_tokenizer("approx").splits_at_spaces
    ds = load_beir(data_dir / dataset)
    rng = random.Random(13)
    texts = [f"{d.title}\n\n{d.text}" for d, _ in zip(ds.corpus(), range(1500))]
    checked = 0
    for text in texts:
        seams = [i for i in range(1, len(text)) if seam(text, i)]
        for i in rng.sample(seams, min(len(seams), 15)):
            j = rng.choice([k for k in seams if k > i] or [len(text)])   # three pieces: seams chain
            assert tok.count(text[:j]) == tok.count(text[:i]) + tok.count(text[i:j]), (text[max(0, i - 20):i + 20])
            checked += 1
    assert checked > 10000


def test_seams_outside_the_rule_do_not_always_add_up():
    tok = load_tokenizer("cl100k_base")
    text = "The dance ends.\n\nForagers return."
    i = text.index("\n")
    assert not seam(text, i) and tok.count(text) != tok.count(text[:i]) + tok.count(text[i:])
    assert not seam("ab  c", 3) and seam("ab  c", 2) and not seam(" a", 0) and not seam("a ", 2)
