#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU: our `train bench` on
# each GPU backend and precision, PyTorch eager on the same GPU and precisions, one table.
#
#   benches/gpu.sh [--models resnet18,resnet50] [--batch-size 256] [--steps 30]
#                  [--backends cuda,wgpu] [--precisions f32,f16,bf16] [--out DIR]
#
# TRAIN=path/to/train names the binary (built with `--features wgpu,cuda`; README.md in this
# folder says how to build and carry one to a machine without Rust), else target/release/train.
# CIFAR10_DIR must name the CIFAR-10 binary folder. A backend or precision that fails is
# reported and skipped; PyTorch is skipped where it is not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
models=resnet18,resnet50
batch=256
steps=30
backends=cuda,wgpu
precisions=f32,f16,bf16
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift ;;
    --batch-size) batch="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --backends) backends="$2"; shift ;;
    --precisions) precisions="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$here/$(basename "$0")"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
TRAIN="${TRAIN:-$here/../target/release/train}"
[ -x "$TRAIN" ] || { echo "error: no train binary at $TRAIN (set TRAIN)" >&2; exit 2; }
out="${out:-$(mktemp -d)}"
mkdir -p "$out"
results="$out/results.jsonl"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-balanced}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
for precision in ${precisions//,/ }; do
  for backend in ${backends//,/ }; do
    echo "== burn $backend $precision" >&2
    "$TRAIN" bench --backend "$backend" --precision "$precision" --models "$models" \
      --batch-size "$batch" --steps "$steps" --warmup 5 --json "$results" >&2 \
      || echo "burn $backend $precision failed; see above" >&2
  done
  if python3 -c 'import torch' 2>/dev/null; then
    echo "== pytorch cuda $precision" >&2
    python3 "$here/pytorch_reference.py" --device cuda --precision "$precision" \
      --models "$models" --batch-size "$batch" --steps "$steps" --warmup 5 \
      --json "$results" >&2 || echo "pytorch $precision failed; see above" >&2
  fi
done
echo "date: $(date -u +%F)"
python3 "$here/ratio.py" "$results"
echo "raw results: $results"
