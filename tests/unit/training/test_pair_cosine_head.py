"""The trained rerankers' head (fathom/training/pair_cosine_head.py): why it exists, and that it starts as a ranker.

The shipped MiniLM is a mean-pooled bi-encoder; a [CLS]-reading head on it
starts from a near-constant input, which is what made fine-tuning collapse to
the label prior. These checks pin both facts on the real weights, so a change
of base model or head that brings the collapse back fails here first, in
seconds, rather than as a quietly useless reranker after a full training run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fathom.training.pair_cosine_head import MODEL_TYPE, pair_cosine_from_encoder  # noqa: E402
from fathom.training.rerank.trainer import base_source, init_cross_encoder  # noqa: E402

QUERY = "How do vaccines teach the immune system to recognise a virus?"
PASSAGES = [
    "Vaccination exposes the immune system to an antigen so that B cells and T cells form a memory of the pathogen.",
    "The telescope resolved two faint galaxies whose light left them ten billion years ago.",
    "Knead the dough for ten minutes, then let it rise in a warm place until doubled in size.",
    "Interest rates rose for the third quarter in a row as inflation stayed above the central bank's target.",
]


def _logits(model: torch.nn.Module, tokenizer: object, query: str, passages: list[str]) -> torch.Tensor:
    enc = tokenizer([query] * len(passages), passages, truncation=True, max_length=128, padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**enc).logits.view(-1)


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return base_source()[0]


def test_a_cls_head_on_the_shipped_encoder_starts_from_a_near_constant(base_dir: Path) -> None:
    """The reason for the pair-cosine head: [CLS] hardly changes with the input in the first layers."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    model = transformers.AutoModel.from_pretrained(str(base_dir))
    enc = tokenizer([QUERY] * len(PASSAGES), PASSAGES, truncation=True, max_length=128, padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        states = model.eval()(**enc, output_hidden_states=True).hidden_states
    for layer in (1, 2):
        cls = states[layer][:, 0]
        assert float(cls.std(0).mean()) < 0.02 * float(cls.norm(dim=-1).mean()), layer


def test_the_pair_cosine_head_starts_as_a_ranker_and_exports_its_type(base_dir: Path, tmp_path: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    logits = _logits(pair_cosine_from_encoder(str(base_dir)), tokenizer, QUERY, PASSAGES)
    assert int(logits.argmax()) == 0                      # the on-topic passage first, before any training
    assert float(logits.max() - logits.min()) > 2.0       # a usable spread, not the collapsed 0.02
    # Cut to 2 layers and saved like a training run's start: it reloads by folder through the Auto classes.
    init = init_cross_encoder(base_dir, tmp_path / "init", 2, seed=13)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(init))
    assert reloaded.config.model_type == MODEL_TYPE and reloaded.config.num_hidden_layers == 2
    cut = _logits(reloaded, tokenizer, QUERY, PASSAGES)
    assert int(cut.argmax()) == 0 and cut.shape == (len(PASSAGES),)


def test_the_head_needs_segment_ids(base_dir: Path) -> None:
    """Without token_type_ids the query and the passage cannot be told apart: refuse instead of guessing."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    enc = tokenizer([QUERY], [PASSAGES[0]], return_tensors="pt")
    enc.pop("token_type_ids")
    with pytest.raises(ValueError, match="token_type_ids"):
        pair_cosine_from_encoder(str(base_dir))(**enc)
