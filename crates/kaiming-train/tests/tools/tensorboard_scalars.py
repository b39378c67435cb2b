"""Prints every scalar of a TensorBoard log folder as JSON, read with TensorBoard's own reader.

    python tensorboard_scalars.py RUN/tensorboard  ->  {"train/loss": [[step, value], ...], ...}
"""

import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main(folder: str) -> None:
    accumulator = event_accumulator.EventAccumulator(
        folder, size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    scalars = {
        tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
    json.dump(scalars, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
