#!/usr/bin/env bash
# The GPU check of issue 46 in one command, for a machine with an NVIDIA GPU, no Rust and no
# network (docs/gpus.md says how to build, pack, carry and run it):
#
#   1. the Vulkan loader: where `ldconfig -p` lists no libvulkan.so.1, the carried Debian
#      packages (PAYLOAD/deb/*.deb) are unpacked into / (root only); where no ICD names an
#      NVIDIA driver, VK_DRIVER_FILES points at the driver's own
#      (/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json); the GPU and driver are printed;
#   2. a short real run first (ResNet-20, He init, SGD lr 0.05, batch 128, about 300 steps on the
#      data given, a metrics row per step) with `train --backend wgpu`, whose adapter is printed,
#      and the same recipe on the CPU (flex) as far as the compared rows: the train rows of
#      steps 1-3 must agree within 1e-3 and an evaluation row of those steps within 1e-2
#      (relative, loss and lr: the tolerances of tests/suite/gpu.rs); later rows are reported;
#   3. `train bench` on each backend (wgpu, vulkan) and PyTorch eager on the same GPU
#      (benches/pytorch_reference.py), alternating model by model, for every precision, batch
#      size and model: training and evaluation images/s, GFLOP/s and peak memory;
#   4. everything as JSON lines (gpu-check.jsonl: one object per line, its "kind" one of
#      environment, run, compare, compare_summary, bench, summary), a Markdown table
#      (gpu-check.md), the log (gpu-check.log) and both runs' metrics.csv
#      (run-gpu-metrics.csv, run-cpu-metrics.csv), in the output folder.
# Each part is bounded by `timeout` within --budget seconds from the start; what the budget
# leaves out is reported as skipped. A backend that is not compiled in or cannot open its
# device, and a precision a backend lacks, are reported once and skipped after that.
#
#   benches/gpu-check.sh [--out DIR] [--dry-run] [--budget S] [--models LIST]
#                        [--batch-sizes LIST] [--precisions LIST] [--backends LIST]
#                        [--steps N] [--warmup N] [--run-model NAME] [--run-steps N]
#                        [--run-batch-size N] [--no-run] [--no-pytorch] [--data-dir DIR]
#                        [--payload DIR]
#
#   --out DIR            output folder [default: $OUT, else a new folder under /tmp]
#   --dry-run            the whole check at toy sizes on whatever Vulkan device exists (Mesa's
#                        software device where there is no GPU): ResNet-8 (the smallest CIFAR
#                        ResNet, ResNet-20's layer shapes) for both the run and the bench,
#                        batch 8, f32, one step and no warm-up per measurement, an 8-image
#                        cut of the data, 3 run steps; any other flag still applies. Also
#                        GPU_CHECK_DRY_RUN=1
#   --budget S           wall-clock seconds for everything [default: 450; dry run 600]
#   --models LIST        [default: resnet20,resnet18,resnet50 (the CIFAR stem throughout)]
#   --batch-sizes LIST   [default: 128,256]
#   --precisions LIST    f32, f16, bf16 [default: f32,f16,bf16]
#   --backends LIST      our GPU backends to measure [default: wgpu,vulkan]
#   --steps N            timed steps per measurement [default: 10]
#   --warmup N           untimed steps before them [default: 3]
#   --run-model NAME     model of the real run [default: resnet20]
#   --run-steps N        steps of the real run, rounded up to whole epochs [default: 300]
#   --run-batch-size N   [default: 128]
#   --no-run             skip the real run and its comparison (a follow-up call that only
#                        measures throughput); the exit status then ignores the comparison
#   --no-pytorch         skip the PyTorch side (it is skipped anyway where `import torch`
#                        fails, saying so)
#   --data-dir DIR       CIFAR-10 binary folder [default: $CIFAR10_DIR, else
#                        PAYLOAD/cifar-10-batches-bin]; a dry run cuts its 8 images from it
#   --payload DIR        what benches/gpu-pack.sh packed [default: $GPU_CHECK_PAYLOAD, else
#                        .gpu-check in the checkout]
#
# TRAIN names the train binary (built with the wgpu and vulkan features); without it,
# PAYLOAD/train.xz is unpacked, else target/release/train is used. CUBECL_AUTOTUNE_LEVEL
# defaults to balanced (minimal in a dry run). Needs python3 (PyTorch only for its side).
# Exit status: 0 when every part ran and the compared rows agree (or --no-run); 1 when the GPU
# run failed, its rows disagree with the CPU run's, a real (not dry) run landed on a software
# device, or the script stopped early; 2 for a bad flag or a missing file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
started=$SECONDS
script_started_utc="$(date -u +%FT%TZ)"

log=/dev/null
die() {
  echo "gpu-check: error: $*" | tee -a "$log" >&2
  exit 2
}
need_value() {
  [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"
}
whole() {
  case "$2" in
    '' | *[!0-9]*) die "$1 must be a whole number (got '$2')" ;;
  esac
  [ "$2" -ge "${3:-1}" ] || die "$1 must be at least ${3:-1} (got $2)"
}
list() {
  case "$2" in
    '' | ,* | *, | *,,* | *[!a-z0-9,]*) die "$1 must be a comma-separated list (got '$2')" ;;
  esac
}

dry_run=no
case "${GPU_CHECK_DRY_RUN:-}" in
  '' | 0 | no | false) ;;
  *) dry_run=yes ;;
esac
out="${OUT:-}"
budget="" models="" batches="" precisions="" backends="" steps="" warmup=""
run_model="" run_steps="" run_batch="" pytorch=yes real_run=yes data="${CIFAR10_DIR:-}"
payload="${GPU_CHECK_PAYLOAD:-$root/.gpu-check}"
argv=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --out) need_value "$@"; out="$2"; shift ;;
    --dry-run) dry_run=yes ;;
    --budget) need_value "$@"; whole "$1" "$2" 30; budget="$2"; shift ;;
    --models) need_value "$@"; list "$1" "$2"; models="$2"; shift ;;
    --batch-sizes) need_value "$@"; list "$1" "$2"; batches="$2"; shift ;;
    --precisions) need_value "$@"; list "$1" "$2"; precisions="$2"; shift ;;
    --backends) need_value "$@"; list "$1" "$2"; backends="$2"; shift ;;
    --steps) need_value "$@"; whole "$1" "$2"; steps="$2"; shift ;;
    --warmup) need_value "$@"; whole "$1" "$2" 0; warmup="$2"; shift ;;
    --run-model) need_value "$@"; list "$1" "$2"; [[ "$2" != *,* ]] || die "--run-model takes one model (got '$2')"; run_model="$2"; shift ;;
    --run-steps) need_value "$@"; whole "$1" "$2"; run_steps="$2"; shift ;;
    --run-batch-size) need_value "$@"; whole "$1" "$2"; run_batch="$2"; shift ;;
    --no-run) real_run=no ;;
    --no-pytorch) pytorch=no ;;
    --data-dir) need_value "$@"; data="$2"; shift ;;
    --payload) need_value "$@"; payload="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for value in ${batches//,/ }; do whole --batch-sizes "$value"; done
for value in ${precisions//,/ }; do
  case "$value" in f32 | f16 | bf16) ;; *) die "--precisions: unknown precision '$value' (f32, f16, bf16)" ;; esac
done
for value in ${backends//,/ }; do
  case "$value" in wgpu | vulkan | cuda | metal | flex | ndarray) ;;
    *) die "--backends: unknown backend '$value' (wgpu, vulkan, cuda, metal, flex, ndarray)" ;;
  esac
done

if [ "$dry_run" = yes ]; then
  mode=dry-run
  : "${budget:=600}" "${models:=resnet8}" "${batches:=8}" "${precisions:=f32}"
  : "${backends:=wgpu,vulkan}" "${steps:=1}" "${warmup:=0}" "${run_model:=resnet8}"
  : "${run_steps:=3}" "${run_batch:=8}"
  export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
  cell_cap=300 run_cap=300 cpu_cap=300 cell_floor=5
else
  mode=gpu
  : "${budget:=450}" "${models:=resnet20,resnet18,resnet50}" "${batches:=128,256}"
  : "${precisions:=f32,f16,bf16}" "${backends:=wgpu,vulkan}" "${steps:=10}" "${warmup:=3}"
  : "${run_model:=resnet20}" "${run_steps:=300}" "${run_batch:=128}"
  export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-balanced}"
  cell_cap=120 run_cap=110 cpu_cap=60 cell_floor=15
fi
reserve=10 # seconds kept for the report
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
threads=$(nproc)
compare_steps=3

command -v python3 >/dev/null || die "python3 is needed (JSON lines, the comparison, the table)"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"
if [ -z "$out" ]; then
  out="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-out.XXXXXX")"
fi
mkdir -p "$out" || die "--out $out cannot be created"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-work.XXXXXX")"
log="$out/gpu-check.log"
results="$work/gpu-check.jsonl"
: >"$log"
: >"$results"
py="$work/gpu_check.py"

# ---------------------------------------------------------------------------------------------
# The Python half: JSON rows, the comparison of the two runs, the Markdown table.
# ---------------------------------------------------------------------------------------------
cat >"$py" <<'PYTHON'
import csv, json, math, os, statistics, sys

def parse_fields(items):
    """key=text gives a string, key:=text a JSON value."""
    row = {}
    for item in items:
        key, text = item.split("=", 1)
        if key.endswith(":"):
            row[key[:-1]] = json.loads(text)
        else:
            row[key] = text
    return row

def append(path, rows):
    with open(path, "a", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, sort_keys=False) + "\n")

def cmd_row(path, *items):
    append(path, [parse_fields(items)])

def cmd_merge(path, tool_json, *items):
    """The rows a tool wrote, each with the fields given added in front."""
    extra = parse_fields(items)
    rows = []
    with open(tool_json, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                rows.append({**extra, **json.loads(line)})
    if not rows:
        sys.exit(f"{tool_json}: no rows")
    append(path, rows)
    for row in rows:
        print(f"  {row['implementation']} {row['model']} batch {row['batch_size']} "
              f"{row['precision']}: train {row['images_per_s']:.1f} images/s, eval "
              f"{row['eval_images_per_s']:.1f} images/s, peak {row['peak_memory_mib']:.0f} MiB",
              file=sys.stderr)

def read_metrics(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))

def cmd_run(path, run_dir, *items):
    """One row per run: its summary and what its metrics say."""
    row = parse_fields(items)
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as file:
            summary = json.load(file)
        for key in ("device", "status", "steps", "epochs_completed", "final_accuracy",
                    "final_train_loss", "total_time_s", "precision", "git_commit"):
            row[key] = summary.get(key)
    metrics_path = os.path.join(run_dir, "metrics.csv")
    if os.path.exists(metrics_path):
        rows = read_metrics(metrics_path)
        train = [r for r in rows if r["split"] == "train"]
        evals = [r for r in rows if r["split"] != "train"]
        row["metric_rows"] = len(rows)
        if train:
            row["last_train_loss"] = float(train[-1]["loss"])
            rates = [float(r["images_per_sec"]) for r in train[1:]]
            if rates:
                row["median_train_images_per_s"] = statistics.median(rates)
        if evals:
            row["last_eval_accuracy"] = float(evals[-1]["accuracy"])
            row["last_eval_loss"] = float(evals[-1]["loss"])
    append(path, [row])

def cmd_compare(path, gpu_csv, cpu_csv, compare_steps):
    """Rows of the GPU run against the CPU run's: gated where the GPU test gates them."""
    compare_steps = int(compare_steps)
    gpu = read_metrics(gpu_csv)
    cpu = {(r["step"], r["epoch"], r["split"]): r for r in read_metrics(cpu_csv)}
    rows, failures, gated = [], 0, 0
    for g in gpu:
        c = cpu.get((g["step"], g["epoch"], g["split"]))
        if c is None:
            continue
        step = int(g["step"])
        is_train = g["split"] == "train"
        tolerance = 1e-3 if is_train else 1e-2
        gate = step <= compare_steps
        row = {"kind": "compare", "step": step, "epoch": int(g["epoch"]), "split": g["split"],
               "gated": gate, "tolerance": tolerance}
        ok = True
        for what in ("loss", "lr"):
            got, want = float(g[what]), float(c[what])
            rel = abs(got - want) / max(abs(want), 1e-30)
            row[f"{what}_gpu"], row[f"{what}_cpu"], row[f"{what}_rel"] = got, want, rel
            ok = ok and math.isfinite(got) and abs(got - want) <= tolerance * abs(want)
        row["accuracy_gpu"], row["accuracy_cpu"] = float(g["accuracy"]), float(c["accuracy"])
        row["within"] = ok
        if gate:
            gated += 1
            failures += not ok
        rows.append(row)
    append(path, rows)
    worst = max((r["loss_rel"] for r in rows if r["gated"]), default=float("nan"))
    verdict = gated > 0 and failures == 0
    append(path, [{"kind": "compare_summary", "gated_rows": gated, "failures": failures,
                   "compared_rows": len(rows), "worst_gated_loss_rel": worst,
                   "compare_steps": compare_steps, "pass": verdict}])
    for r in rows:
        if r["gated"] or r is rows[-1]:
            print(f"  step {r['step']:>4} {r['split']:<5} loss {r['loss_gpu']:.6f} (GPU) "
                  f"{r['loss_cpu']:.6f} (CPU) rel {r['loss_rel']:.2e} tolerance "
                  f"{r['tolerance']:.0e} {'gated' if r['gated'] else 'reported'}: "
                  f"{'ok' if r['within'] else 'DIFFERS'}", file=sys.stderr)
    if gated == 0:
        print("  no row of steps 1..%d in both runs" % compare_steps, file=sys.stderr)
    sys.exit(0 if verdict else 1)

def fmt(x, digits=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

def cmd_report(path, md_path):
    rows = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                rows.append(json.loads(line))
    env = next((r for r in rows if r["kind"] == "environment"), {})
    runs = [r for r in rows if r["kind"] == "run"]
    bench = [r for r in rows if r["kind"] == "bench"]
    compare = [r for r in rows if r["kind"] == "compare"]
    verdict = next((r for r in rows if r["kind"] == "compare_summary"), None)
    summary = next((r for r in rows if r["kind"] == "summary"), None)
    lines = [f"# GPU check, {env.get('date', '?')} ({env.get('mode', '?')})", ""]
    lines.append(f"- GPU: {env.get('gpu') or 'none reported by nvidia-smi'}; driver "
                 f"{env.get('driver') or '?'}")
    adapter = next((r for r in runs if r.get("role") == "gpu"), {})
    lines.append(f"- adapter of the {adapter.get('backend', 'GPU')} run: "
                 f"{adapter.get('device') or '?'}")
    lines.append(f"- Vulkan loader: {env.get('vulkan_loader', '?')}; ICD: "
                 f"{env.get('vulkan_icd', '?')}")
    lines.append(f"- train: {env.get('train_version', '?')}; PyTorch: "
                 f"{env.get('pytorch', '?')}; CUBECL_AUTOTUNE_LEVEL="
                 f"{env.get('autotune_level', '?')}; {env.get('threads', '?')} CPU threads")
    lines.append(f"- command: `{env.get('command', '?')}`")
    if summary:
        lines.append(f"- status: {summary.get('status')}, {summary.get('wall_s', 0):.0f} s of a "
                     f"{summary.get('budget_s')} s budget")
    lines.append("")
    lines.append("## First rows: GPU run against the CPU run")
    lines.append("")
    if not runs:
        lines.append("Not run (`--no-run`, or no time left).")
    for r in runs:
        lines.append(f"- {r.get('role')} run ({r.get('backend')}): {r.get('status')} on "
                     f"{r.get('device')}, "
                     f"{r.get('steps')} steps in {fmt(r.get('wall_s'), 0)} s, last train loss "
                     f"{fmt(r.get('last_train_loss'), 4)}, last evaluation accuracy "
                     f"{fmt(r.get('last_eval_accuracy'), 4)}"
                     + (f" ({r['reason']})" if r.get("reason") else ""))
    lines.append("")
    if compare:
        lines.append("| step | split | loss GPU | loss CPU | relative | tolerance | |")
        lines.append("|---|---|---|---|---|---|---|")
        shown = [r for r in compare if r["gated"]] + [r for r in compare if not r["gated"]][-3:]
        for r in shown:
            mark = ("ok" if r["within"] else "**differs**") if r["gated"] else "(reported)"
            lines.append(f"| {r['step']} | {r['split']} | {r['loss_gpu']:.6f} | "
                         f"{r['loss_cpu']:.6f} | {r['loss_rel']:.1e} | {r['tolerance']:.0e} | "
                         f"{mark} |")
        lines.append("")
    if verdict:
        lines.append(f"Verdict: {'pass' if verdict['pass'] else 'FAIL'} "
                     f"({verdict['gated_rows']} gated rows, {verdict['failures']} outside "
                     "tolerance).")
        lines.append("")
    lines.append("## Throughput: ours against PyTorch eager on the same GPU")
    lines.append("")
    impls = []
    for r in bench:
        if r["backend"] not in impls:
            impls.append(r["backend"])
    ours = [b for b in impls if b != "pytorch"]
    cells = {}
    for r in bench:
        cells[(r["model"], r["batch_size"], r["precision"], r["backend"])] = r
    keys = []
    for r in bench:
        key = (r["model"], r["batch_size"], r["precision"])
        if key not in keys:
            keys.append(key)
    def show(r, field, digits=1):
        if r is None:
            return "-"
        if r.get("status") != "ok":
            return r.get("status", "?")
        return fmt(r.get(field), digits)
    header = ["model", "batch", "precision"]
    for what in ("train", "eval"):
        header += [f"{b} {what} img/s" for b in impls]
        header += [f"{b}/PyTorch {what}" for b in ours]
    header += [f"{b} peak MiB" for b in impls]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for key in keys:
        cell = [key[0], str(key[1]), key[2]]
        torch = cells.get(key + ("pytorch",))
        for what, field in (("train", "images_per_s"), ("eval", "eval_images_per_s")):
            cell += [show(cells.get(key + (b,)), field) for b in impls]
            for b in ours:
                mine = cells.get(key + (b,))
                if mine and torch and mine.get("status") == "ok" and torch.get("status") == "ok":
                    cell.append(f"{mine[field] / torch[field]:.2f}")
                else:
                    cell.append("-")
        cell += [show(cells.get(key + (b,)), "peak_memory_mib", 0) for b in impls]
        lines.append("| " + " | ".join(cell) + " |")
    lines.append("")
    odd = [r for r in bench if r.get("status") != "ok"]
    if odd:
        lines.append("Not measured:")
        lines.append("")
        seen = set()
        for r in odd:
            text = f"{r['backend']} {r['precision']}: {r.get('status')} ({r.get('reason', '')})"
            if text not in seen:
                seen.add(text)
                lines.append(f"- {text}")
        lines.append("")
    if summary and summary.get("parts"):
        lines.append("Seconds per part: " + ", ".join(
            f"{k} {v:.0f}" for k, v in summary["parts"].items()) + ".")
        lines.append("")
    tmp = md_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(tmp, md_path)

def cmd_get(path, key):
    """A field of a JSON file, printed bare."""
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    print(data.get(key, ""))

def cmd_images(folder):
    """Training images in a CIFAR-10 binary folder, from the files' sizes."""
    total = 0
    for index in range(1, 6):
        size = os.path.getsize(os.path.join(folder, f"data_batch_{index}.bin"))
        if size % 3073:
            sys.exit(f"{folder}/data_batch_{index}.bin: not a whole number of records")
        total += size // 3073
    print(total)

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
PYTHON

pyrun() { python3 "$py" "$@"; }
row() { pyrun row "$results" "$@"; }
elapsed() { echo $((SECONDS - started)); }
left() { echo $((budget - (SECONDS - started))); }
say() { echo "gpu-check [$(elapsed) s]: $*" | tee -a "$log" >&2; }
# Copies $1 to $2 through a temporary file beside it.
publish_file() {
  [ -f "$1" ] || return 0
  cp "$1" "$2.tmp" && chmod 644 "$2.tmp" && mv -f "$2.tmp" "$2"
}
publish() {
  publish_file "$results" "$out/gpu-check.jsonl"
  pyrun report "$results" "$work/gpu-check.md" 2>>"$log" &&
    publish_file "$work/gpu-check.md" "$out/gpu-check.md" || true
}

status=running
verdict=fail
parts="" # JSON members: "part": seconds
part_started=0
begin_part() { part_started=$SECONDS; say "== $1"; }
end_part() { parts+="${parts:+, }\"$1\": $((SECONDS - part_started))"; publish; }
finish() {
  local code=$?
  trap - EXIT INT TERM
  if [ "$status" = running ]; then
    status="stopped (exit $code)"
  fi
  row kind=summary status="$status" wall_s:="$(elapsed)" budget_s:="$budget" \
    parts:="{$parts}" comparison="$verdict" \
    comparison_pass:="$([ "$verdict" = pass ] && echo true || echo false)" \
    2>>"$log" || true
  publish
  say "results: $out/gpu-check.jsonl, $out/gpu-check.md, $log"
  rm -rf "$work"
  if [ "$code" -eq 0 ] && { [ "$status" != complete ] || [ "$verdict" = fail ]; }; then
    code=1
  fi
  exit "$code"
}
trap finish EXIT
trap 'status="stopped by a signal"; exit 143' INT TERM

say "mode $mode, output $out, budget $budget s"

# ---------------------------------------------------------------------------------------------
# 1. Vulkan loader and driver, the binary, the data.
# ---------------------------------------------------------------------------------------------
begin_part setup
ldconfig_list() { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; }
# Read whole, then searched: `ldconfig -p | grep -q` fails under pipefail once grep stops early.
libraries="$(ldconfig_list)"
if grep -q 'libvulkan\.so\.1' <<<"$libraries"; then
  loader="system ($(grep -m1 'libvulkan\.so\.1' <<<"$libraries" | sed 's/.*=> //'))"
else
  shopt -s nullglob
  debs=("$payload"/deb/*.deb)
  shopt -u nullglob
  if [ ${#debs[@]} -eq 0 ]; then
    status="no Vulkan loader"
    say "error: no libvulkan.so.1 on this machine and no .deb in $payload/deb (benches/gpu-pack.sh downloads them)"
    exit 2
  fi
  [ "$(id -u)" -eq 0 ] || { status="no Vulkan loader"; say "error: unpacking $payload/deb/*.deb into / needs root"; exit 2; }
  for deb in "${debs[@]}"; do dpkg -x "$deb" /; done
  ldconfig
  loader="carried (${#debs[@]} packages from $payload/deb unpacked into /)"
fi
icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d)
if [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  icd="${VK_DRIVER_FILES:-$VK_ICD_FILENAMES} (from the environment)"
else
  found="$(find "${icd_dirs[@]}" -maxdepth 1 -name '*.json' 2>/dev/null | paste -sd ' ' || true)"
  nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if ! grep -qi nvidia <<<"$found" && [ -f "$nvidia_icd" ]; then
    export VK_DRIVER_FILES="$nvidia_icd"
    egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
    icd="$nvidia_icd (VK_DRIVER_FILES, set here)"
  else
    icd="${found:-none found in ${icd_dirs[*]}}"
  fi
fi
say "Vulkan loader: $loader"
say "Vulkan ICD: $icd"
gpu="" driver=""
if command -v nvidia-smi >/dev/null; then
  smi="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>>"$log" | head -1 || true)"
  gpu="$(cut -d, -f1,3 <<<"$smi" | sed 's/^ *//')"
  driver="$(cut -d, -f2 <<<"$smi" | tr -d ' ')"
  say "nvidia-smi: ${smi:-no answer}"
fi

if [ -n "${TRAIN:-}" ]; then
  [ -f "$TRAIN" ] && [ -x "$TRAIN" ] || die "TRAIN=$TRAIN is not an executable file"
  train="$TRAIN"
elif [ -f "$payload/train.xz" ]; then
  xz -dc "$payload/train.xz" >"$work/train" || die "cannot unpack $payload/train.xz"
  chmod +x "$work/train"
  train="$work/train"
elif [ -x "$root/target/release/train" ]; then
  train="$root/target/release/train"
else
  die "no train binary: set TRAIN, or pack $payload/train.xz with benches/gpu-pack.sh"
fi
train="$(cd "$(dirname "$train")" && pwd)/$(basename "$train")"
train_version="$("$train" --version 2>>"$log" || echo '?')"
say "train: $train ($train_version)"

if [ -z "$data" ]; then
  data="$payload/cifar-10-batches-bin"
  [ -d "$data" ] || die "no CIFAR-10 folder: pass --data-dir, set CIFAR10_DIR, or pack $data with benches/gpu-pack.sh"
fi
[ -f "$data/data_batch_1.bin" ] || die "--data-dir $data has no data_batch_1.bin (not CIFAR-10's binary layout)"
data="$(cd "$data" && pwd)"
if [ "$dry_run" = yes ]; then
  # As many images as the largest batch: one batch an epoch, so every pass has the same shape.
  cut=$run_batch
  for value in ${batches//,/ }; do [ "$value" -le "$cut" ] || cut=$value; done
  "$here/gpu-pack.sh" --data-only --data-dir "$data" --dest "$work/cifar" \
    --train-images "$cut" --test-images "$cut" 2>>"$log"
  data="$work/cifar/cifar-10-batches-bin"
fi
images="$(pyrun images "$data")"
say "data: $data ($images training images)"

torch_version="not checked (--no-pytorch)"
torch_device=""
if [ "$pytorch" = yes ]; then
  if probe="$(python3 -c 'import numpy, torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")' 2>&1)"; then
    torch_version="${probe% *}"
    torch_device="${probe##* }"
    if [ "$torch_device" = cpu ] && [ "$dry_run" = no ]; then
      say "PyTorch $torch_version sees no CUDA device: skipping the PyTorch side"
      torch_version="$torch_version (no CUDA device)"
      torch_device=""
    fi
  else
    torch_version="not importable ($(tail -1 <<<"$probe"))"
    say "PyTorch is not importable here ($(tail -1 <<<"$probe")): skipping the PyTorch side"
  fi
fi
command_line="benches/gpu-check.sh${argv[*]:+ ${argv[*]}}"
row kind=environment mode="$mode" date="$script_started_utc" host="$(cat /proc/sys/kernel/hostname 2>/dev/null || echo '?')" \
  gpu="$gpu" driver="$driver" vulkan_loader="$loader" vulkan_icd="$icd" \
  train="$train" train_version="$train_version" pytorch="$torch_version" \
  pytorch_device="$torch_device" autotune_level="$CUBECL_AUTOTUNE_LEVEL" threads:="$threads" \
  data="$data" train_images:="$images" budget_s:="$budget" command="$command_line" \
  models="$models" batch_sizes="$batches" precisions="$precisions" backends="$backends" \
  steps:="$steps" warmup:="$warmup" run_model="$run_model" run_steps:="$run_steps" \
  run_batch_size:="$run_batch" kernel="$(uname -r)" \
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
end_part setup

# ---------------------------------------------------------------------------------------------
# 2. The real run on the GPU and the same recipe on the CPU, first rows compared.
# ---------------------------------------------------------------------------------------------
# Seconds for the next command: at most $1, and what the budget leaves after the report's share.
cap() {
  local room=$(($(left) - reserve))
  [ "$room" -lt "$1" ] && echo "$room" || echo "$1"
}
begin_part run
per_epoch=$(((images + run_batch - 1) / run_batch))
epochs=$(((run_steps + per_epoch - 1) / per_epoch))
cpu_epochs=$(((compare_steps + per_epoch - 1) / per_epoch))
[ "$cpu_epochs" -le "$epochs" ] || cpu_epochs=$epochs
# The learning rate of the GPU test's run (tests/suite/common.rs, tiny_run_args), under which its
# tolerances were measured: at 0.1 a dry run's third step already differed by 8.6e-4.
recipe=(--model "$run_model" --init he --epochs "$epochs" --batch-size "$run_batch" --lr 0.05
  --schedule constant --weight-decay 5e-4 --log-every 1 --seed 0 --checkpoint-every 100000
  --data-dir "$data" --no-download --quiet --out "$work/runs")
gpu_backend="${backends%%,*}"
run_ok=no
# One run: $1 its role (gpu or cpu, the run folder's name), $2 backend, $3 seconds at most,
# then flags.
train_run() {
  local role="$1" backend="$2" limit="$3" code=0 began=$SECONDS output="$work/run-$1.log"
  shift 3
  say "train --backend $backend: $epochs epoch(s) of $per_epoch steps ${*:+($*) }at most $limit s"
  (cd "$work" && timeout -k 10 "$limit" "$train" "${recipe[@]}" --backend "$backend" \
    --name "$role" "$@") >"$output" 2>&1 || code=$?
  cat "$output" >>"$log"
  local reason=""
  case "$code" in
    0) ;;
    124 | 137) reason="stopped at its $limit s limit" ;;
    *) reason="exit $code: $(grep -m1 -E '^error|panicked' "$output" || tail -1 "$output")" ;;
  esac
  [ -z "$reason" ] || say "  $backend run: $reason"
  pyrun run "$results" "$work/runs/$role" kind=run role="$role" backend="$backend" \
    exit_code:=$code wall_s:=$((SECONDS - began)) reason="$reason" planned_epochs:="$epochs" \
    2>>"$log"
  [ -f "$work/runs/$role/metrics.csv" ] &&
    publish_file "$work/runs/$role/metrics.csv" "$out/run-$role-metrics.csv"
  return "$code"
}
if [ "$real_run" = no ]; then
  verdict=skipped
  say "--no-run: no run, no comparison"
elif [ "$(cap "$run_cap")" -lt "$cell_floor" ]; then
  say "no time left for the run"
else
  code=0
  train_run gpu "$gpu_backend" "$(cap "$run_cap")" || code=$?
  case "$code" in
    0 | 124 | 137) run_ok=yes ;; # stopped by its limit: the rows it wrote still compare
    *) say "the $gpu_backend run failed; the end of its output:"; tail -5 "$work/run-gpu.log" >&2 ;;
  esac
fi
adapter="$(pyrun get "$work/runs/gpu/summary.json" device 2>/dev/null || true)"
[ "$real_run" = no ] || say "adapter ($gpu_backend): ${adapter:-unknown}"
if [ "$real_run" = yes ] && [ "$dry_run" = no ] && grep -qiE 'llvmpipe|lavapipe|swiftshader|software' <<<"$adapter"; then
  status="software device"
  say "error: wgpu ran on a software device ($adapter), not the GPU: is the NVIDIA ICD visible? (VK_DRIVER_FILES)"
  exit 1
fi
stop=()
[ "$cpu_epochs" -lt "$epochs" ] && stop=(--stop-after "$cpu_epochs")
if [ -f "$work/runs/gpu/metrics.csv" ]; then
  train_run cpu flex "$(cap "$cpu_cap")" "${stop[@]}" || {
    say "the CPU run failed; the end of its output:"
    tail -5 "$work/run-cpu.log" >&2
  }
  if [ -f "$work/runs/cpu/metrics.csv" ]; then
    say "first rows, $gpu_backend against flex:"
    if pyrun compare "$results" "$work/runs/gpu/metrics.csv" \
      "$work/runs/cpu/metrics.csv" "$compare_steps" 2>&1 | tee -a "$log" >&2 &&
      [ "$run_ok" = yes ]; then
      verdict=pass
    fi
  fi
fi
say "comparison: $verdict"
end_part run

# ---------------------------------------------------------------------------------------------
# 3. Throughput: each backend of ours, then PyTorch, model by model.
# ---------------------------------------------------------------------------------------------
begin_part bench
declare -A dead=()
cell_json="$work/cell.jsonl"
cell_log="$work/cell.log"
# Records one measurement that did not happen.
not_measured() {
  row kind=bench backend="$1" model="$2" batch_size:="$3" precision="$4" status="$5" \
    reason="$6"
}
# Runs one measurement: $1 backend (or pytorch), $2 model, $3 batch, $4 precision.
measure() {
  local backend="$1" model="$2" batch="$3" precision="$4" code=0 began=$SECONDS limit
  local why="${dead[$backend]:-${dead[$backend/$precision]:-}}"
  if [ -n "$why" ]; then
    not_measured "$backend" "$model" "$batch" "$precision" unsupported "$why"
    return
  fi
  limit="$(cap "$cell_cap")"
  if [ "$limit" -lt "$cell_floor" ]; then
    not_measured "$backend" "$model" "$batch" "$precision" skipped "time budget"
    return
  fi
  rm -f "$cell_json"
  local command
  if [ "$backend" = pytorch ]; then
    command=(python3 "$here/pytorch_reference.py" --device "$torch_device")
  else
    command=("$train" bench --backend "$backend")
  fi
  command+=(--models "$model" --batch-size "$batch" --precision "$precision" --steps "$steps"
    --warmup "$warmup" --threads "$threads" --data-dir "$data" --json "$cell_json")
  say "$backend $model batch $batch $precision (at most $limit s)"
  (cd "$work" && PYTHONUNBUFFERED=1 timeout -k 10 "$limit" "${command[@]}") >"$cell_log" 2>&1 ||
    code=$?
  cat "$cell_log" >>"$log"
  local wall=$((SECONDS - began))
  if [ "$code" -eq 0 ] && [ -s "$cell_json" ]; then
    pyrun merge "$results" "$cell_json" kind=bench backend="$backend" status=ok \
      wall_s:="$wall" 2>&1 | tee -a "$log" >&2
    return
  fi
  local reason status=error
  case "$code" in
    124 | 137) status=timeout reason="stopped at its $limit s limit" ;;
    0) reason="no rows written" ;;
    *) reason="$(grep -m1 -E '^error|panicked|Error' "$cell_log" || tail -1 "$cell_log")" ;;
  esac
  reason="${reason#error: }"
  # What cannot change for later cells is reported as unsupported and not tried again.
  if grep -qE 'not compiled into this binary|cannot open a device|sees no CUDA device' "$cell_log"; then
    status=unsupported
    dead[$backend]="$reason"
  elif grep -qE "has no $precision arithmetic|does not support $precision|runs on cuda only" "$cell_log"; then
    status=unsupported
    dead[$backend/$precision]="$reason"
  fi
  say "  $status: $reason"
  not_measured "$backend" "$model" "$batch" "$precision" "$status" "$reason"
}
for precision in ${precisions//,/ }; do
  for batch in ${batches//,/ }; do
    for model in ${models//,/ }; do
      for backend in ${backends//,/ }; do
        measure "$backend" "$model" "$batch" "$precision"
      done
      if [ "$pytorch" = no ]; then
        :
      elif [ -z "$torch_device" ]; then
        not_measured pytorch "$model" "$batch" "$precision" skipped "PyTorch: $torch_version"
      elif [ "$torch_device" = cpu ] && [ "$precision" = f16 ]; then
        not_measured pytorch "$model" "$batch" "$precision" skipped "f16 runs on cuda only"
      else
        measure pytorch "$model" "$batch" "$precision"
      fi
      publish
    done
  done
done
end_part bench

status=complete
say "done in $(elapsed) s; comparison $verdict"
