#!/usr/bin/env bash
# Packs what benches/gpu-check.sh needs on a GPU machine without Rust or network into one
# git-ignored folder of the checkout, to be carried there (the device tool's `carry`).
#
#   benches/gpu-pack.sh [--train PATH] [--data-dir DIR] [--dest DIR] [--train-images N]
#                       [--test-images N] [--data-only] [--no-debs] [--limit-mib M]
#
#   --train PATH        the train binary, built with the wgpu and vulkan features
#                       [default: $TRAIN, else target/release/train]; stripped and xz-compressed
#                       into DEST/train.xz
#   --data-dir DIR      the CIFAR-10 binary folder (cifar-10-batches-bin) to cut the subset from
#                       [default: $CIFAR10_DIR]
#   --dest DIR          the folder to fill [default: .gpu-check in the checkout, which this
#                       script adds to .git/info/exclude]
#   --train-images N    images kept of data_batch_1.bin; data_batch_2..5.bin are left empty
#                       [default: 5120, 40 batches of 128]
#   --test-images N     images kept of test_batch.bin [default: 1000]
#   --data-only         cut the subset only (no binary, no .debs, no size check); what
#                       gpu-check.sh --dry-run uses
#   --no-debs           skip the Vulkan loader's Debian packages
#   --limit-mib M       fail if the checkout's travelling files plus DEST exceed M MiB
#                       [default: 64, the device tool's limit]
#
# DEST ends up holding train.xz, cifar-10-batches-bin/ (CIFAR-10's binary layout, 3073 bytes
# per image: one label byte, 3072 pixel bytes) and deb/ (libvulkan1 and the GL/EGL loaders,
# downloaded with apt-get as /work/.library/device/README.md says). docs/gpus.md says how to run
# the check with it. Each file is written to a temporary name first and then renamed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
train="${TRAIN:-}"
data="${CIFAR10_DIR:-}"
dest=""
train_images=5120
test_images=1000
data_only=no
debs=yes
limit_mib=64
record=3073

die() {
  echo "gpu-pack: error: $*" >&2
  exit 2
}
need_value() {
  [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"
}
count() {
  case "$2" in
    '' | *[!0-9]*) die "$1 must be a whole number (got '$2')" ;;
  esac
  [ "$2" -ge "${3:-1}" ] || die "$1 must be at least ${3:-1} (got $2)"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --train) need_value "$@"; train="$2"; shift ;;
    --data-dir) need_value "$@"; data="$2"; shift ;;
    --dest) need_value "$@"; dest="$2"; shift ;;
    --train-images) need_value "$@"; count "$1" "$2"; train_images="$2"; shift ;;
    --test-images) need_value "$@"; count "$1" "$2"; test_images="$2"; shift ;;
    --data-only) data_only=yes ;;
    --no-debs) debs=no ;;
    --limit-mib) need_value "$@"; count "$1" "$2"; limit_mib="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[ -n "$data" ] || die "no CIFAR-10 folder: pass --data-dir or set CIFAR10_DIR"
[ -d "$data" ] || die "--data-dir $data is not a folder"
for name in data_batch_1.bin test_batch.bin; do
  [ -f "$data/$name" ] || die "--data-dir $data has no $name (not CIFAR-10's binary layout)"
done
have_train=$(($(stat -c %s "$data/data_batch_1.bin") / record))
have_test=$(($(stat -c %s "$data/test_batch.bin") / record))
[ "$train_images" -le "$have_train" ] ||
  die "--train-images $train_images: $data/data_batch_1.bin holds $have_train"
[ "$test_images" -le "$have_test" ] ||
  die "--test-images $test_images: $data/test_batch.bin holds $have_test"

if [ -z "$dest" ]; then
  dest="$root/.gpu-check"
  exclude="$(git -C "$root" rev-parse --git-path info/exclude)"
  case "$exclude" in /*) ;; *) exclude="$root/$exclude" ;; esac
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu-check/' "$exclude" 2>/dev/null || echo '/.gpu-check/' >>"$exclude"
fi
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

# Writes stdin to $1 through a temporary file in the same folder.
put() {
  local tmp
  tmp="$(mktemp "$1.tmp.XXXXXX")"
  if cat >"$tmp" && chmod 644 "$tmp"; then
    mv -f "$tmp" "$1"
  else
    rm -f "$tmp"
    return 1
  fi
}

# The CIFAR-10 subset: the first images of data_batch_1.bin and test_batch.bin, the other four
# training files empty (the loader requires all six files; an empty one holds zero records).
cifar="$dest/cifar-10-batches-bin"
mkdir -p "$cifar"
head -c $((train_images * record)) "$data/data_batch_1.bin" | put "$cifar/data_batch_1.bin"
for index in 2 3 4 5; do
  : | put "$cifar/data_batch_$index.bin"
done
head -c $((test_images * record)) "$data/test_batch.bin" | put "$cifar/test_batch.bin"
if [ -f "$data/batches.meta.txt" ]; then
  put "$cifar/batches.meta.txt" <"$data/batches.meta.txt"
fi
echo "gpu-pack: $cifar: $train_images training and $test_images test images" >&2
[ "$data_only" = no ] || exit 0

# The binary, stripped and compressed (xz -9 takes the release binary from ~120 MB to ~22 MB).
train="${train:-$root/target/release/train}"
[ -f "$train" ] && [ -x "$train" ] || die "--train $train is not an executable file (build it: docs/gpus.md)"
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
# A run that stops at validation: the binary names a backend it lacks there, and nothing runs.
for backend in wgpu vulkan; do
  "$train" --backend "$backend" --train-limit 0 --quiet --no-download --out "$check/runs" \
    >"$check/out" 2>&1 || true
  if grep -q "not compiled into this binary" "$check/out"; then
    missing="$train lacks the $backend backend (build it as docs/gpus.md says)"
    # Without vulkan the check still measures wgpu; without wgpu it measures nothing.
    [ "$backend" = vulkan ] || die "$missing"
    echo "gpu-pack: warning: $missing; the check will report vulkan as unsupported" >&2
  fi
done
strip -o "$check/train" "$train"
xz -T0 -9 -c "$check/train" | put "$dest/train.xz"
echo "gpu-pack: $dest/train.xz: $(du -h "$dest/train.xz" | cut -f1) (stripped $(du -h "$check/train" | cut -f1))" >&2

# The Vulkan loader (and GL/EGL loaders), for a machine whose image lacks libvulkan.so.1.
if [ "$debs" = yes ]; then
  mkdir -p "$dest/deb" /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update -qq >&2
  rm -f "$dest/deb/"*.deb
  (cd "$dest/deb" && apt-get "${o[@]}" download \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >&2)
  echo "gpu-pack: $dest/deb: $(ls "$dest/deb" | tr '\n' ' ')" >&2
fi

# What travels: the checkout's tracked and untracked-but-not-ignored files, and DEST.
# (A tracked file deleted in the working tree is still listed, and does not travel.)
tree_bytes=$(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  python3 -c 'import os, sys
names = sys.stdin.buffer.read().split(b"\0")
print(sum(os.path.getsize(n) for n in names if n and os.path.isfile(n)))')
dest_bytes=$(du -sb "$dest" | cut -f1)
total=$((tree_bytes + dest_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "gpu-pack: checkout $(mib "$tree_bytes") + $dest $(mib "$dest_bytes") = $(mib "$total") (limit $limit_mib MiB)"
[ "$total" -le $((limit_mib * 1048576)) ] ||
  die "$(mib "$total") travels, over --limit-mib $limit_mib: pass fewer --train-images"
case "$dest" in
  "$root"/*) echo "gpu-pack: carry [\"${dest#"$root"/}\"]; then run benches/gpu-check.sh there (docs/gpus.md)" ;;
  *) echo "gpu-pack: $dest is outside the checkout: only folders inside it can be carried" ;;
esac
