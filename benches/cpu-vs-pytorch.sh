#!/usr/bin/env bash
# Our CPU training throughput against PyTorch's on this machine, one command.
#
#   benches/cpu-vs-pytorch.sh [--models resnet20,resnet18] [--batch-size 128] [--steps 20]
#                             [--threads N] [--rounds 3] [--backend flex] [--out DIR]
#
# Same models, init, batch, SGD settings (lr 0.1, momentum 0.9, no dampening, weight decay
# 5e-4), real CIFAR-10 batches with crop + flip, and thread count on both sides. Each model runs
# in its own process, alternating ours and PyTorch's for --rounds rounds so both see the same
# machine; the table gives medians and the ratio ours / PyTorch.
#
# Needs CIFAR-10 (CIFAR10_DIR or ./datasets) and PyTorch (`pip install torch`; without it only
# our side runs). TRAIN=path/to/train uses a built binary, else `cargo build --release` makes one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
models=resnet20,resnet18
batch=128
steps=20
threads=$(nproc)
rounds=3
backend=flex
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift ;;
    --batch-size) batch="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --backend) backend="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$here/$(basename "$0")"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$(mktemp -d)}"
mkdir -p "$out"
results="$out/results.jsonl"

if [ -z "${TRAIN:-}" ]; then
  (cd "$here/.." && cargo build --release --quiet --bin train)
  TRAIN="$here/../target/release/train"
fi
torch=yes
python3 -c 'import torch' 2>/dev/null || {
  echo "PyTorch is not installed (pip install torch): measuring our side only" >&2
  torch=no
}

for round in $(seq "$rounds"); do
  for model in ${models//,/ }; do
    echo "round $round/$rounds: $model" >&2
    "$TRAIN" bench --models "$model" --batch-size "$batch" --steps "$steps" \
      --threads "$threads" --backend "$backend" --json "$results" >&2
    if [ "$torch" = yes ]; then
      python3 "$here/pytorch_reference.py" --models "$model" --batch-size "$batch" \
        --steps "$steps" --threads "$threads" --json "$results" >&2
    fi
  done
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%F)"
python3 "$here/ratio.py" "$results"
echo "raw results: $results"
