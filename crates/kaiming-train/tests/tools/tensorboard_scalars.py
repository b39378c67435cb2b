"""Prints every scalar of a TensorBoard log folder as JSON, read with TensorBoard's own reader.

    python tensorboard_scalars.py RUN/tensorboard  ->  {"train/loss": [[step, value], ...], ...}

A value that is not finite (an update ratio of a zero-initialised bias at its first step) is
written as the string "nan", "inf" or "-inf", which JSON has no number for.
"""

import json
import math
import sys


def value(number: float):
    return number if math.isfinite(number) else repr(number)

from tensorboard.backend.event_processing import event_accumulator


def main(folder: str) -> None:
    accumulator = event_accumulator.EventAccumulator(
        folder, size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    scalars = {
        tag: [[event.step, value(event.value)] for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
    json.dump(scalars, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
