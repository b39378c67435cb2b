"""PyTorch reference for the Rust training benchmark (`train bench`).

Trains the models of `crates/kaiming-resnet` layer for layer, initialised as `train` does
(`--init he`), with the same optimizer and the same CIFAR-10 pipeline as `crates/kaiming-cifar`,
and prints the fields the Rust benchmark prints, so the two can be compared model by model.

What is matched, and where it comes from:

- Models (`kaiming-resnet`): the CIFAR ResNets of He et al. 2016, §4.2 (`resnet20` … `resnet1202`:
  a 3×3 stem of 16 filters, three stages of basic blocks with 16/32/64 filters, option A
  shortcuts: stride-2 subsampling plus zero channels appended after the input's); the
  torchvision-layout `resnet18` … `resnet152` (option B 1×1 projections, "v1.5" bottlenecks
  with the stride on the 3×3 convolution) with the CIFAR stem (3×3/1 convolution, no max-pool)
  that `train` uses by default; the plain twins (`plain20`, `plain-resnet18`, … without
  shortcuts) and `plaincnn` (depth 30, width 16). Convolutions have no bias (batch norm follows
  each), batch norm has eps 1e-5 and momentum 0.1, then global average pooling and a linear
  classifier with bias over 10 classes.
- Initialisation (`kaiming-init`, scheme `he`): every convolution and linear weight
  N(0, 2 / fan_in), every bias zero, batch norm γ = 1 and β = 0.
- Optimizer: SGD with momentum 0.9 (no dampening, no Nesterov) and L2 weight decay 5e-4 on every
  parameter; cross-entropy loss; the model in training mode.
- Data (`kaiming-cifar`): the five CIFAR-10 training batches (`data_batch_{1..5}.bin`, records of
  one label byte and 3072 pixel bytes in CHW order), shuffled with a seed, each image padded by
  4 black pixels on every side, randomly cropped back to 32×32 and mirrored with probability
  1/2, then normalised per channel with the mean and population standard deviation of the
  training images. Batches are built in the main thread with NumPy (no DataLoader workers);
  that work is the "data" phase. The random streams differ from the Rust ChaCha8 ones, so the
  batches are equally distributed, not identical, and the last, smaller batch of an epoch is
  skipped to keep every timed step the same size.

Multiply-adds (MACs) are counted as `train models` counts them: convolutions and linear layers
only, output elements × input channels per group × kernel area for a convolution and inputs ×
outputs for a linear layer. One training step is taken as three forward passes (the backward
pass costs about two), hence `train_gflop_per_image = 3 × 2 × MACs / 1e9`.

Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On the CPU it is the process's peak
resident set, which includes PyTorch's own libraries (about 0.5 GiB for a CUDA build of PyTorch)
and never falls between the models of one invocation: run one model per invocation to compare
it with the Rust figure.

On CUDA, f32 means IEEE f32: TF32 is switched off for convolutions and matrix products unless
`--tf32` is given. cuDNN's autotuner is on, since every step has the same shapes.

Requirements: PyTorch installs from PyPI (`pip install torch`), and so does NumPy (`pip install
numpy`). Without PyTorch the script says so and exits with status 0, so it can sit in a
benchmark list on machines that lack it.

Examples:

    CIFAR10_DIR=datasets/cifar-10-batches-bin python3 benches/pytorch_reference.py
    python3 benches/pytorch_reference.py --synthetic --models resnet56 --threads 1
    python3 benches/pytorch_reference.py --device cuda --precision bf16 --json bench.jsonl
    python3 benches/pytorch_reference.py --check-params --models all
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as import_error:
    if import_error.name == "torch":
        print(
            "PyTorch is not installed (pip install torch); skipping the reference benchmark",
            file=sys.stderr,
        )
    else:
        print(
            f"PyTorch cannot be imported ({import_error}); skipping the reference benchmark",
            file=sys.stderr,
        )
    sys.exit(0)

try:
    import numpy as np
except ImportError:
    print(
        "NumPy is not installed (pip install numpy); skipping the reference benchmark",
        file=sys.stderr,
    )
    sys.exit(0)


NUM_CLASSES = 10
SIDE = 32
CHANNELS = 3
IMAGE_BYTES = CHANNELS * SIDE * SIDE
CROP_PADDING = 4
TRAIN_FILES = [f"data_batch_{index}.bin" for index in range(1, 6)]
TRAIN_IMAGES = 50_000
LOCAL_DATA_DIR = Path("datasets/cifar-10-batches-bin")
STATISTICS_CHUNK = 1_000
# Published CIFAR-10 training-set statistics (kaiming-cifar's `Normalization::CIFAR10_TRAIN`),
# used for synthetic data, which has no training set to measure.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
BOTTLENECK_EXPANSION = 4
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
PLAINCNN_DEPTH = 30
PLAINCNN_WIDTH = 16
PLAINCNN_STAGES = 3

AUTOCAST_DTYPES = {"f32": None, "f16": torch.float16, "bf16": torch.bfloat16}


class UsageError(Exception):
    """A setting or environment problem to report in one line, without a traceback."""


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetSpec:
    """One row of the architecture table, as `ResNetConfig` holds it."""

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    stem: str  # "cifar" or "imagenet"
    shortcut: str  # "A" or "B"
    residual: bool


def all_model_names() -> list[str]:
    """Every model name, in the order `train models` lists them."""
    imagenet = list(IMAGENET_LAYOUTS)
    return (
        [f"resnet{depth}" for depth in imagenet]
        + [f"resnet{depth}" for depth in CIFAR_DEPTHS]
        + [f"plain{depth}" for depth in CIFAR_DEPTHS]
        + [f"plain-resnet{depth}" for depth in imagenet]
        + ["plaincnn"]
    )


def resnet_spec(name: str, stem_kind: str) -> ResNetSpec:
    """The architecture of a ResNet or plain-twin name (`ModelName::from_str` and
    `ModelConfig::family`): option A shortcuts for the CIFAR nets, option B for the rest."""
    for prefix, residual in (("plain-resnet", False), ("resnet", True)):
        depth = name.removeprefix(prefix)
        if depth.isdigit() and int(depth) in IMAGENET_LAYOUTS:
            block, layers = IMAGENET_LAYOUTS[int(depth)]
            return ResNetSpec(block, layers, IMAGENET_WIDTHS, stem_kind, "B", residual)
    for prefix, residual in (("plain", False), ("resnet", True)):
        depth = name.removeprefix(prefix)
        # Any 6n + 2 the Rust side accepts (`ResNetConfig::cifar`), e.g. resnet8.
        if depth.isdigit() and int(depth) >= 8 and (int(depth) - 2) % 6 == 0:
            blocks = (int(depth) - 2) // 6
            return ResNetSpec("basic", (blocks,) * 3, CIFAR_WIDTHS, "cifar", "A", residual)
    raise ValueError(f"unknown model {name!r}")


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    """A k×k convolution with padding k // 2 and no bias, then batch norm (`norm::conv`)."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]


class PadShortcut(nn.Module):
    """Option A: keep every `stride`-th pixel from the first and append zero channels, so the
    input fills the first channels of the output. No parameters, no multiply-adds."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity where the shape is kept, else option A's padding or option B's projection."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(stride, out_channels - in_channels)
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))


class Block(nn.Module):
    """A residual branch, plus the shortcut when there is one, then the closing ReLU."""

    def __init__(self, branch: nn.Sequential, skip: nn.Module | None) -> None:
        super().__init__()
        self.branch = branch
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return F.relu(out, inplace=True)


def block(spec: ResNetSpec, in_channels: int, width: int, stride: int) -> tuple[Block, int]:
    """One basic block (3×3/stride → 3×3) or bottleneck (1×1 → 3×3/stride → 1×1 × 4) and its
    output channels."""
    if spec.block == "basic":
        out_channels = width
        layers = [
            *conv_bn(in_channels, width, 3, stride),
            nn.ReLU(inplace=True),
            *conv_bn(width, width, 3, 1),
        ]
    else:
        out_channels = width * BOTTLENECK_EXPANSION
        layers = [
            *conv_bn(in_channels, width, 1, 1),
            nn.ReLU(inplace=True),
            *conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            *conv_bn(width, out_channels, 1, 1),
        ]
    skip = shortcut(spec.shortcut, in_channels, out_channels, stride) if spec.residual else None
    return Block(nn.Sequential(*layers), skip), out_channels


def stem(kind: str, out_channels: int) -> list[nn.Module]:
    """CIFAR stem (3×3/1 conv) or ImageNet stem (7×7/2 conv and 3×3/2 max-pool)."""
    if kind == "cifar":
        return [*conv_bn(CHANNELS, out_channels, 3, 1), nn.ReLU(inplace=True)]
    return [
        *conv_bn(CHANNELS, out_channels, 7, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]


def classifier(features: int) -> list[nn.Module]:
    """Global average pooling and a fully connected layer with bias."""
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, NUM_CLASSES)]


def build_resnet(spec: ResNetSpec) -> nn.Sequential:
    """Stem → stages (the first block of each later stage halves the resolution) → classifier."""
    layers = stem(spec.stem, spec.widths[0])
    channels = spec.widths[0]
    for index, (count, width) in enumerate(zip(spec.layers, spec.widths)):
        for position in range(count):
            stride = 2 if index > 0 and position == 0 else 1
            module, channels = block(spec, channels, width, stride)
            layers.append(module)
    return nn.Sequential(*layers, *classifier(channels))


def build_plaincnn() -> nn.Sequential:
    """`PlainCnnConfig` at its defaults: depth − 1 conv-BN-ReLU layers in three stages (earlier
    stages take the remainder), each later stage opening with a stride-2 conv that doubles the
    width, then the classifier."""
    convs = PLAINCNN_DEPTH - 1
    layers: list[nn.Module] = []
    channels = CHANNELS
    for stage in range(PLAINCNN_STAGES):
        count = convs // PLAINCNN_STAGES + (stage < convs % PLAINCNN_STAGES)
        width = PLAINCNN_WIDTH << stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            layers += [*conv_bn(channels, width, 3, stride), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers, *classifier(channels))


def build_model(name: str, stem_kind: str) -> nn.Sequential:
    """The model `train --model NAME --stem STEM` trains, before initialisation."""
    if name == "plaincnn":
        return build_plaincnn()
    return build_resnet(resnet_spec(name, stem_kind))


def he_init(model: nn.Module) -> None:
    """The `he` scheme as `train` applies it (`InitPlan::new(he)`, no rules): every convolution
    and linear weight, the classifier's included, N(0, 2 / fan_in); biases zero; batch norm
    γ = 1, β = 0. (torchvision's own init differs: fan_out, and PyTorch's default for the
    classifier.)"""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class Complexity:
    """Trainable parameters and forward multiply-adds per 32×32 image."""

    params: int
    macs: int

    @property
    def train_gflop_per_image(self) -> float:
        """Forward plus backward, taken as three forward passes of two FLOPs per MAC."""
        return 3 * 2 * self.macs / 1e9


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one convolution or linear layer for a batch of one."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    return output.numel() * module.in_features


def complexity(name: str, stem_kind: str) -> Complexity:
    """Counts a model built on the meta device, so even resnet1202 costs no memory or compute:
    forward hooks on every convolution and linear layer see the output shapes of one image."""
    with torch.device("meta"):
        model = build_model(name, stem_kind)
        image = torch.empty(1, CHANNELS, SIDE, SIDE)
    macs = 0

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal macs
        macs += layer_macs(module, output)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(count)
    model.eval()
    with torch.no_grad():
        model(image)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Complexity(params, macs)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Images:
    """Training images as stored: uint8 `[N, 3, 32, 32]` and int64 labels `[N]`."""

    pixels: np.ndarray
    labels: np.ndarray


def load_cifar10_train(directory: Path) -> Images:
    """The five binary training batches, in file order, read one file at a time so the peak
    memory stays near the 150 MB the images take. A file may hold fewer than its 10,000
    records, or none: `benches/gpu-pack.sh` cuts such a subset for machines that carry their
    data, and `kaiming-cifar` reads it the same way."""
    missing = [name for name in TRAIN_FILES if not (directory / name).is_file()]
    if missing:
        raise UsageError(
            f"{directory} is not a CIFAR-10 binary folder (missing {', '.join(missing)}); "
            "point --data-dir or CIFAR10_DIR at cifar-10-batches-bin, or pass --synthetic"
        )
    record = 1 + IMAGE_BYTES
    counts = []
    for name in TRAIN_FILES:
        size = (directory / name).stat().st_size
        if size % record:
            raise UsageError(
                f"{directory / name} is {size} bytes, not a whole number of {record}-byte "
                "records"
            )
        counts.append(size // record)
    total = sum(counts)
    if total == 0:
        raise UsageError(f"{directory} holds no training images")
    pixels = np.empty((total, CHANNELS, SIDE, SIDE), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    start = 0
    for name, count in zip(TRAIN_FILES, counts):
        records = np.fromfile(directory / name, dtype=np.uint8).reshape(count, record)
        rows = slice(start, start + count)
        labels[rows] = records[:, 0]
        pixels[rows] = records[:, 1:].reshape(count, CHANNELS, SIDE, SIDE)
        start += count
    return Images(pixels, labels)


def synthetic_cifar10(count: int, seed: int) -> Images:
    """Uniform random bytes in CIFAR-10's shapes, as many as the real training set, so that
    gathering a batch touches memory the same way."""
    rng = np.random.default_rng(seed)
    return Images(
        pixels=rng.integers(0, 256, size=(count, CHANNELS, SIDE, SIDE), dtype=np.uint8),
        labels=rng.integers(0, NUM_CLASSES, size=count, dtype=np.int64),
    )


def channel_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation on the [0, 1] scale
    (`Normalization::from_dataset`), from exact byte histograms built a chunk of images at a
    time (`np.bincount` widens its input to 64 bits)."""
    counts = np.zeros((CHANNELS, 256), dtype=np.int64)
    for start in range(0, len(pixels), STATISTICS_CHUNK):
        chunk = pixels[start:start + STATISTICS_CHUNK]
        for channel in range(CHANNELS):
            counts[channel] += np.bincount(chunk[:, channel].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1)
    mean = counts @ values / total
    variance = counts @ values**2 / total - mean**2
    return mean / 255, np.sqrt(variance) / 255


def lookup_tables(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """`[3, 256]` float32: the normalised value of every byte per channel, so normalising a
    batch is one gather (`Normalization::lookup_tables`)."""
    values = np.arange(256) / 255
    return ((values - mean[:, None]) / std[:, None]).astype(np.float32)


def augment(pixels: np.ndarray, tables: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pads each image with black, crops a random 32×32 window, mirrors it with probability
    1/2 and normalises it: `[B, 3, 32, 32]` uint8 in, float32 out."""
    count = len(pixels)
    pad = CROP_PADDING
    padded = np.pad(pixels, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    offsets = rng.integers(0, 2 * pad + 1, size=(2, count))
    flips = rng.random(count) < 0.5
    rows = offsets[0][:, None] + np.arange(SIDE)
    cols = offsets[1][:, None] + np.arange(SIDE)
    cols = np.where(flips[:, None], cols[:, ::-1], cols)
    channels = np.arange(CHANNELS)[None, :, None, None]
    crops = padded[
        np.arange(count)[:, None, None, None],
        channels,
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    return tables[channels, crops]


def batches(
    data: Images, tables: np.ndarray, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless epochs of shuffled, augmented, normalised full batches."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(data.labels))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            members = order[start:start + batch_size]
            yield augment(data.pixels[members], tables, rng), data.labels[members]


def data_dir(args: argparse.Namespace) -> Path:
    """The CIFAR-10 folder, searched as `kaiming-cifar` does short of downloading:
    `--data-dir`, else `CIFAR10_DIR`, else `datasets/cifar-10-batches-bin` under the current
    directory. A folder the user named must exist."""
    if args.data_dir is not None:
        directory, source = args.data_dir, "--data-dir"
    elif os.environ.get("CIFAR10_DIR"):
        directory, source = Path(os.environ["CIFAR10_DIR"]), "CIFAR10_DIR"
    elif LOCAL_DATA_DIR.is_dir():
        return LOCAL_DATA_DIR
    else:
        raise UsageError(
            "no CIFAR-10 folder: set CIFAR10_DIR or pass --data-dir (the "
            f"cifar-10-batches-bin folder), put it at ./{LOCAL_DATA_DIR}, or pass --synthetic"
        )
    if not directory.is_dir():
        raise UsageError(f"CIFAR-10 folder {directory} (from {source}) does not exist")
    return directory


def load_data(args: argparse.Namespace) -> tuple[Images, np.ndarray]:
    """The training images and their normalisation tables, real or synthetic."""
    if args.synthetic:
        data = synthetic_cifar10(TRAIN_IMAGES, args.seed)
        tables = lookup_tables(np.array(CIFAR10_MEAN), np.array(CIFAR10_STD))
    else:
        data = load_cifar10_train(data_dir(args))
        tables = lookup_tables(*channel_statistics(data.pixels))
    if args.batch_size > len(data.labels):
        raise UsageError(f"--batch-size exceeds the {len(data.labels)} training images")
    return data, tables


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------


def cpu_kernels() -> dict:
    """ATen's CPU capability and oneDNN's instruction-set cap (`all` unless capped)."""
    return {
        "isa": torch.backends.cpu.get_cpu_capability().lower(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "all").lower(),
    }


@dataclass
class Result:
    """One model's measurements, with the keys the Rust benchmark's JSON uses."""

    implementation: str
    model: str
    batch_size: int
    precision: str
    device: str
    threads: int
    steps: int
    images_per_s: float
    step_ms: float
    data_ms: float
    forward_ms: float
    backward_ms: float
    optimizer_ms: float
    train_gflop_per_image: float
    gflops_per_s: float
    peak_memory_mib: float
    macs_per_image: int
    final_loss: float
    eval_images_per_s: float
    eval_ms: float
    # The vector instructions PyTorch ran with, as ours name their kernel path: ATen's CPU
    # capability and oneDNN's cap (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` make an
    # AVX-512 machine run PyTorch as an AVX2-only one does).
    kernels: dict


class Step:
    """One timed training step: data, forward (with the loss), backward, optimizer.

    On CUDA every phase boundary synchronises, so each phase is charged its own kernels rather
    than those it queued for the next."""

    def __init__(
        self,
        model: nn.Module,
        args: argparse.Namespace,
        device: torch.device,
        data: Iterator[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.model = model
        self.device = device
        self.data = data
        self.optimizer = torch.optim.SGD(
            model.parameters(),
            lr=args.lr,
            momentum=args.momentum,
            dampening=0,
            weight_decay=args.weight_decay,
            nesterov=False,
        )
        self.autocast_dtype = AUTOCAST_DTYPES[args.precision]
        # Loss scaling only for f16, whose range would flush small gradients to zero.
        self.scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "f16")

    def _clock(self) -> float:
        """The time once the work queued so far has finished."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def run(self) -> tuple[list[float], torch.Tensor]:
        """Seconds per phase, and the loss (not synchronised to the host)."""
        start = time.perf_counter()
        images, labels = next(self.data)
        images = torch.from_numpy(images).to(self.device, non_blocking=True)
        labels = torch.from_numpy(labels).to(self.device, non_blocking=True)
        loaded = self._clock()
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast_dtype is not None,
        ):
            loss = F.cross_entropy(self.model(images), labels)
        forwarded = self._clock()
        self.scaler.scale(loss).backward()
        backwarded = self._clock()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        stepped = self._clock()
        marks = [start, loaded, forwarded, backwarded, stepped]
        return [later - earlier for earlier, later in zip(marks, marks[1:])], loss.detach()


def peak_memory_mib(device: torch.device) -> float:
    """Peak CUDA memory allocated by tensors, or on the CPU the process's peak resident set
    (which covers every model run so far in this process)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def benchmark(
    name: str, args: argparse.Namespace, device: torch.device, data: Images, tables: np.ndarray
) -> Result:
    """Warms up, then times `args.steps` steps of one model from a fresh initialisation."""
    cost = complexity(name, args.stem)
    torch.manual_seed(args.seed)
    model = build_model(name, args.stem)
    he_init(model)
    model.to(device).train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = Step(model, args, device, batches(data, tables, args.batch_size, args.seed))
    for _ in range(args.warmup):
        step.run()
    phases, losses = zip(*(step.run() for _ in range(args.steps)))
    step_s = statistics.median(sum(times) for times in phases)
    data_s, forward_s, backward_s, optimizer_s = (
        statistics.median(column) for column in zip(*phases)
    )
    images_per_s = args.batch_size / step_s
    eval_s = evaluation_seconds(step, args)
    return Result(
        implementation=f"pytorch {torch.__version__.split('+')[0]} {device.type}",
        model=name,
        batch_size=args.batch_size,
        precision=args.precision,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        threads=torch.get_num_threads(),
        steps=args.steps,
        images_per_s=images_per_s,
        step_ms=1e3 * step_s,
        data_ms=1e3 * data_s,
        forward_ms=1e3 * forward_s,
        backward_ms=1e3 * backward_s,
        optimizer_ms=1e3 * optimizer_s,
        train_gflop_per_image=cost.train_gflop_per_image,
        gflops_per_s=cost.train_gflop_per_image * images_per_s,
        peak_memory_mib=peak_memory_mib(device),
        macs_per_image=cost.macs,
        final_loss=losses[-1].item(),
        eval_images_per_s=args.batch_size / eval_s,
        eval_ms=1e3 * eval_s,
        kernels=cpu_kernels() if device.type == "cpu" else {},
    )


def evaluation_seconds(step: Step, args: argparse.Namespace) -> float:
    """Median seconds of a forward pass in evaluation mode (no autograd, batch norm on its
    running statistics) on the next batches, after as many warm-up passes as training had."""
    model = step.model.eval()
    times = []
    with torch.inference_mode():
        for index in range(args.warmup + args.steps):
            images, _ = next(step.data)
            images = torch.from_numpy(images).to(step.device)
            start = step._clock()
            with torch.autocast(
                step.device.type,
                dtype=step.autocast_dtype,
                enabled=step.autocast_dtype is not None,
            ):
                model(images)
            if index >= args.warmup:
                times.append(step._clock() - start)
    model.train()
    return statistics.median(times)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the first two left-aligned, numbers right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index < 2 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def results_table(results: list[Result]) -> str:
    """The benchmark table, one row per model."""
    header = [
        "implementation", "model", "batch", "precision", "threads", "images/s", "GFLOP/s",
        "peak MiB", "data ms", "fwd ms", "bwd ms", "opt ms", "loss",
    ]
    rows = [
        [
            r.implementation,
            r.model,
            str(r.batch_size),
            r.precision,
            str(r.threads),
            f"{r.images_per_s:.1f}",
            f"{r.gflops_per_s:.1f}",
            f"{r.peak_memory_mib:.0f}",
            f"{r.data_ms:.2f}",
            f"{r.forward_ms:.2f}",
            f"{r.backward_ms:.2f}",
            f"{r.optimizer_ms:.2f}",
            f"{r.final_loss:.4f}",
        ]
        for r in results
    ]
    return format_table(header, rows)


def complexity_table(names: list[str], stem_kind: str) -> str:
    """Parameters and multiply-adds, laid out as `train models` prints them."""
    header = ["model", "parameters", "forward MACs / image", "GFLOP fwd+bwd / image"]
    rows = []
    for name in names:
        cost = complexity(name, stem_kind)
        rows.append(
            [name, f"{cost.params:,}", f"{cost.macs:,}", f"{cost.train_gflop_per_image:.3f}"]
        )
    return format_table(header, rows)


def append_json(path: Path, result: Result) -> None:
    """Appends one JSON object on its own line, so several runs can share a file."""
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(asdict(result)) + "\n")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def model_list(text: str) -> list[str]:
    """Comma-separated model names, or `all`; rejects unknown names with the valid ones."""
    valid = all_model_names()
    if text.strip().lower() == "all":
        return valid
    names = [name.strip().lower() for name in text.split(",") if name.strip()]

    def known(name: str) -> bool:
        if name in valid:
            return True
        try:
            resnet_spec(name, "cifar")
        except ValueError:
            return False
        return True

    unknown = [name for name in names if not known(name)]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(unknown) or '(none)'}; valid: all, {', '.join(valid)}"
        )
    return names


def positive(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def non_negative(text: str) -> int:
    """An integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0 (got {value})")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with every default stated in `--help`."""
    parser = argparse.ArgumentParser(
        description="Train the kaiming-resnet models in PyTorch with the same init, optimizer "
        "and data pipeline as `train`, and print the throughput fields of `train bench`.",
        epilog="PyTorch and NumPy install from PyPI: pip install torch numpy. Without PyTorch "
        "the script says so and exits with status 0.",
    )
    parser.add_argument(
        "--models",
        type=model_list,
        default="resnet20,resnet18,resnet50",
        help="comma-separated model names as `train` spells them, or `all` "
        "[default: %(default)s]",
    )
    parser.add_argument(
        "--batch-size", type=positive, default=128, help="images per step [default: 128]"
    )
    parser.add_argument(
        "--steps", type=positive, default=20, help="timed steps per model [default: 20]"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative,
        default=3,
        help="untimed steps before the timed ones [default: 3]",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        default=os.cpu_count() or 1,
        help="intra-op CPU threads, torch.set_num_threads [default: os.cpu_count(), "
        "%(default)s here]",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="[default: cpu]"
    )
    parser.add_argument(
        "--precision",
        choices=list(AUTOCAST_DTYPES),
        default="f32",
        help="f16 and bf16 run the forward pass under autocast, f16 with loss scaling and "
        "on cuda only [default: f32]",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="let f32 convolutions and matrix products use TF32 on cuda [default: IEEE f32]",
    )
    parser.add_argument(
        "--stem",
        choices=["cifar", "imagenet"],
        default="cifar",
        help="stem of resnet18…152 and plain-resnet*, as `train --stem` [default: cifar]",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="CIFAR-10 binary folder (cifar-10-batches-bin) [default: $CIFAR10_DIR, else "
        "./datasets/cifar-10-batches-bin]",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="train on random bytes instead of CIFAR-10; needs no data folder",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the weights, the data order and the crops [default: 0]",
    )
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate [default: 0.1]")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum [default: 0.9]")
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=5e-4,
        help="L2 weight decay on every parameter [default: 5e-4]",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="append one JSON object per model to this file (JSON Lines)",
    )
    parser.add_argument(
        "--check-params",
        action="store_true",
        help="print each model's parameters and forward MACs per image, as `train models` "
        "does, and exit",
    )
    return parser.parse_args(argv)


def select_device(args: argparse.Namespace) -> torch.device:
    """The device to train on, after checking that it can run the requested precision."""
    if args.device == "cpu":
        if args.precision == "f16":
            raise UsageError("--precision f16 runs on cuda only; on the CPU use bf16 or f32")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError("--device cuda, but PyTorch sees no CUDA device")
    if args.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"{torch.cuda.get_device_name()} does not support bf16")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    return torch.device("cuda")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark (or the parameter check); returns the exit status."""
    args = parse_args(argv)
    if args.check_params:
        print(complexity_table(args.models, args.stem))
        return 0
    try:
        device = select_device(args)
        data, tables = load_data(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        print(
            f"{name}: {args.warmup} warm-up + {args.steps} timed steps of {args.batch_size}",
            file=sys.stderr,
        )
        result = benchmark(name, args, device, data, tables)
        results.append(result)
        if args.json:
            append_json(args.json, result)
    print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
