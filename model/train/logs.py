"""The training log: one row per logged step in `metrics.csv`, and the same scalars (plus the
validation frames) as TensorBoard event files in `tensorboard/`, both in `--log-dir`.

Written by rank 0 only. A resumed run keeps the rows up to its checkpoint's step and writes the
steps after it again (a killed run may have logged steps its checkpoint does not hold); TensorBoard
is told the same with `purge_step`. Event files need the `tensorboard` package (torch's writer
uses its protobufs); without it only the CSV is written, and the run says so once.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

COLUMNS = ("step", "loss", "loss_smoothed", "lr", "grad_norm", "step_seconds", "clips_per_second", "wall_time")
CSV_NAME = "metrics.csv"
EVENTS_FOLDER = "tensorboard"


class Smoothed:
    """Exponential moving average of the loss (weight `beta` on the past), bias-corrected like
    Adam's moments, so the first steps are not pulled towards zero. Its state rides in checkpoints."""

    def __init__(self, beta: float = 0.9):
        self.beta, self.average, self.count = beta, 0.0, 0

    def update(self, value: float) -> float:
        self.average = self.beta * self.average + (1 - self.beta) * value
        self.count += 1
        return self.average / (1 - self.beta ** self.count)

    def state_dict(self) -> dict:
        return {"average": self.average, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.average, self.count = float(state["average"]), int(state["count"])


def read_rows(path) -> list[dict[str, float]]:
    """metrics.csv's rows as numbers (step as int)."""
    with open(path, newline="") as handle:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


class TrainingLog:
    def __init__(self, folder, every: int, start_step: int, log=print):
        self.folder, self.every = Path(folder), every
        self.folder.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.folder / CSV_NAME
        self._keep_rows_until(start_step)
        self._csv = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._csv)
        if self._csv.tell() == 0:
            self._writer.writerow(COLUMNS)
            self._csv.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.events = None
            log(f"TensorBoard event files need the tensorboard package (pip install tensorboard); "
                f"logging to {self.csv_path} only")
        else:
            self.events = SummaryWriter(str(self.folder / EVENTS_FOLDER),
                                        purge_step=start_step + 1 if start_step else None)

    def _keep_rows_until(self, step: int) -> None:
        if not self.csv_path.is_file():
            return
        with open(self.csv_path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= step] if rows else []
        if len(kept) == len(rows):
            return
        temporary = self.csv_path.with_name(f".{CSV_NAME}.partial")
        with open(temporary, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)
        os.replace(temporary, self.csv_path)

    def wants(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def record(self, step: int, **values: float) -> None:
        """A row for `step` (the caller checks `wants`): the COLUMNS after step and wall_time."""
        values["wall_time"] = time.time()
        # repr keeps every digit: a row reads back as the very float the trainer had
        self._writer.writerow([step] + [repr(float(values[name])) for name in COLUMNS[1:]])
        self._csv.flush()
        if self.events is not None:
            for name in COLUMNS[1:-1]:
                if math.isfinite(values[name]):
                    self.events.add_scalar(f"train/{name}", values[name], step, walltime=values["wall_time"])

    def validation(self, step: int, frames) -> None:
        """A validation video's frames ((frames, height, width, 3), 0..1) as images at its step."""
        if self.events is not None:
            self.events.add_images("validation", frames, step, dataformats="NHWC")
            self.events.flush()

    def close(self) -> None:
        self._csv.close()
        if self.events is not None:
            self.events.close()
