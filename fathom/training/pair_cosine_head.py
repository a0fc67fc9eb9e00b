"""The cross-encoder architecture of our trained rerankers: joint BERT attention, a pair-cosine head.

The pair ``[CLS] query [SEP] passage [SEP]`` goes through the encoder as one
sequence (every query token attends to every passage token: a cross-encoder,
not a bi-encoder). The head then mean-pools the query segment and the passage
segment (``token_type_ids`` 0 / 1) separately, L2-normalises both and returns
``w . (q * p) + b``: a learned, per-dimension weighting of their cosine.

Why not the usual ``BertForSequenceClassification`` head on [CLS]: the only
encoder that ships offline (all-MiniLM-L6-v2) was trained as a bi-encoder with
mean pooling, and its [CLS] state carries almost nothing about the input:
across different pairs its per-dimension standard deviation is 0.0005-0.012
after layers 1-5, against a norm of 8-10 (an attention sink). Fine-tuned from
there, on SciFact train, BCE collapsed to the label prior (loss 0.35 = the
entropy of one positive in nine, validation nDCG@10 0.26 with a logit spread
of 0.02) and a listwise softmax loss stayed at ln 9; a mean-pooled linear head
did not learn much better (0.22 / 0.25 after 300-500 steps). With ``w`` set to
a constant at start, this head *is* the encoder's cosine (what it was trained
for), so training starts from a ranker (0.47 on the validation slice, 2
layers) instead of from noise and improves on it (0.70 after 600 steps), where
joint attention can add what a bi-encoder cannot see.

The classes register with transformers' Auto classes under their own
``model_type``, so sentence-transformers' ``CrossEncoder`` trainer, the ONNX
exporter and ``from_pretrained`` load such a folder like any HF model. Serving
never imports this: it runs the exported ONNX graph (same inputs, one ``logits``
output), which is why a third-party HF cross-encoder serves the same way.
torch and transformers are needed here only (the ``train``/``export`` extras).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "fathom_pair_cosine"
# The starting logit is COSINE_SCALE * (cosine - 1/2): the spread of a fine-tuned logit, centred where a
# bi-encoder's cosine separates related from unrelated text.
COSINE_SCALE = 20.0


class PairCosineBertConfig(BertConfig):
    model_type = MODEL_TYPE


def _segment_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class PairCosineBertForSequenceClassification(BertPreTrainedModel):
    """BERT over the pair -> mean of each segment -> normalised elementwise product -> linear -> logit."""

    config_class = PairCosineBertConfig

    def __init__(self, config: PairCosineBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        """Logits only: the sentence-transformers trainer computes the loss (BCE or MSE) from them."""
        if input_ids is None:
            raise ValueError("input_ids are required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            raise ValueError("token_type_ids are required: they tell the query segment from the passage")
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           return_dict=True).last_hidden_state
        query = _segment_mean(hidden, attention_mask * (token_type_ids == 0))
        passage = _segment_mean(hidden, attention_mask * (token_type_ids == 1))
        pair = torch.nn.functional.normalize(query, dim=-1) * torch.nn.functional.normalize(passage, dim=-1)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pair)))


def pair_cosine_from_encoder(src: str, num_labels: int = 1) -> PairCosineBertForSequenceClassification:
    """The head on a plain BERT encoder's weights (a sentence-transformers folder), starting as its cosine."""
    base = AutoConfig.from_pretrained(src).to_dict()
    for key in ("model_type", "architectures", "id2label", "label2id", "num_labels"):
        base.pop(key, None)
    model = PairCosineBertForSequenceClassification.from_pretrained(src, config=PairCosineBertConfig(
        **base, num_labels=num_labels))
    with torch.no_grad():
        model.classifier.weight.fill_(COSINE_SCALE)
        model.classifier.bias.fill_(-COSINE_SCALE / 2)
    return model


AutoConfig.register(MODEL_TYPE, PairCosineBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PairCosineBertConfig, PairCosineBertForSequenceClassification,
                                            exist_ok=True)
