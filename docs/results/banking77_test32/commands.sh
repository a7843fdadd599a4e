#!/usr/bin/env bash
# Banking77 test phase at 32 dimensions: every method at the point chosen on validation intents
# (docs/text_distillation.md, "Chosen points"), 3 seeds, one folder; then the report.
set -euo pipefail
export OMP_NUM_THREADS=1  # and PML_RELAXED_DATA=<folder holding banking77/>
OUT=${OUT:-results/b77_test32}
COMMON="--dataset banking77 --settings dim32 --seeds 3 --no-progress --no-report --output-dir $OUT"
B="pml-relaxed bench"
$B $COMMON --methods relaxed_contrastive+proxy_anchor --epochs 10 --lr 1e-2 --delta 3 --text-mlp
$B $COMMON --methods relaxed_contrastive+labels --epochs 10 --lr 1e-2 --text-init-std 0.03
$B $COMMON --methods relaxed_contrastive --epochs 10 --lr 1e-2 --delta 3 --text-init-std 0.03
$B $COMMON --methods relaxed_ms --epochs 10 --lr 1e-2 --text-mlp
$B $COMMON --methods rkd --epochs 10 --lr 1e-2 --text-mlp
$B $COMMON --methods pkt --epochs 20 --lr 3e-3 --text-init-std 0.03
$B $COMMON --methods fitnet --epochs 20 --lr 3e-3 --text-init-std 0.03
$B $COMMON --methods darkrank --epochs 20 --lr 3e-3 --text-hidden-dim 128
$B $COMMON --methods miner_contrastive --epochs 10 --lr 1e-2 --text-hidden-dim 128
$B $COMMON --methods supcon --epochs 10 --lr 1e-2 --text-mlp
$B $COMMON --methods multi_similarity --epochs 10 --lr 1e-2 --text-mlp
$B $COMMON --methods proxy_anchor --epochs 10 --lr 3e-3 --text-init-std 0.03
$B $COMMON --methods triplet --epochs 20 --lr 1e-2 --text-mlp
$B $COMMON --methods contrastive --epochs 10 --lr 3e-3 --text-mlp
$B --dataset banking77 --settings dim32 --report-only --no-progress --output-dir $OUT
