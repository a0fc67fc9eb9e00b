#!/usr/bin/env bash
# Train every reranker the README's benchmark rows name, from nothing but the
# offline MiniLM weights and the judged datasets, into .fathom/models/rerankers/:
#   scifact-l6         6 layers, SciFact *train* qrels, hard negatives from our hybrid retriever (the teacher)
#   scifact-l2         2-layer student distilled from scifact-l6 (the fast one; served at depth SERVE_DEPTH)
#   scifact-l2p        the same student, also distilled on 1,200 teacher-scored corpus pseudo-queries
#   scifact-pseudo-l2  no labels: pseudo-queries cut from the SciFact corpus
#   cacm-pseudo-l2     no labels: pseudo-queries cut from the CACM corpus (also applied to SciFact: cross-domain)
# ~70 min on 2 cores, after ./scripts/setup.sh. The corpora are indexed once into .fathom/bench/<name>-mine,
# the folders `fathom bench quality --keep-index` reuses. Re-running retrains (each folder is replaced).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${FATHOM_DATA_DIR:-../shared/data}
SERVE_DEPTH=${SERVE_DEPTH:-10}
FATHOM=".venv/bin/fathom"
export FATHOM_INGEST__EMBED_MPNET=false DO_NOT_TRACK=1   # mining reads the first stage only
SCIFACT=(--dataset "$DATA/scifact" --index-dir .fathom/bench/scifact-mine)
CACM=(--dataset "$DATA/cacm" --index-dir .fathom/bench/cacm-mine)
SMALL=(--layers 2 --max-length 128 --serve-depth "$SERVE_DEPTH")

$FATHOM reranker train "${SCIFACT[@]}" --mode labelled --out scifact-l6 --layers 6 --max-length 128 \
    --epochs 1.5 --negatives 8 --serve-depth "$SERVE_DEPTH"
$FATHOM reranker distil "${SCIFACT[@]}" --teacher scifact-l6 --out scifact-l2 "${SMALL[@]}" --epochs 1
$FATHOM reranker distil "${SCIFACT[@]}" --teacher scifact-l6 --out scifact-l2p "${SMALL[@]}" --epochs 1 \
    --depth 20 --pseudo-queries 1200
$FATHOM reranker train "${SCIFACT[@]}" --mode pseudo --out scifact-pseudo-l2 "${SMALL[@]}" \
    --epochs 1 --negatives 8 --max-queries 1500
$FATHOM reranker train "${CACM[@]}" --mode pseudo --out cacm-pseudo-l2 "${SMALL[@]}" \
    --epochs 1 --negatives 8 --max-queries 1500
