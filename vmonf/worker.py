"""The training worker process: ``python -m vmonf.worker`` reads a :class:`JobSpec` and control commands
on stdin, trains, and writes framed messages (snapshots, events, the final checkpoint) on stdout.

Why a process: an optimisation loop in a thread of the Streamlit server ran at 10-25 % of its
headless speed once a live chart was open (it loses the GIL); a worker process ran at 100 %
(see FINDINGS). It is started with ``subprocess`` so it never imports the app's pages.

Wire format, both directions pickle-free:
- stdin: one JSON line with the spec, then JSON command lines: ``{"cmd": "pause" | "resume" | "stop"}``,
  ``{"cmd": "step", "n": 50}``, ``{"cmd": "remove", "component": 2}`` (take a component out of the mixture).
- stdout: messages ``kind (1 byte) | length (4 bytes, big-endian) | payload`` with kind ``S`` (snapshot
  ``.npz``), ``E`` (event JSON: state changes, errors) or ``C`` (checkpoint bytes, sent on stop).
"""

from __future__ import annotations

import json
import os
import queue
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

import numpy as np

from vmonf.snapshot import append_bounded

SNAPSHOT, EVENT, CHECKPOINT = b"S", b"E", b"C"
#: Curve points kept for the live plots (even); beyond it every second one is dropped.
MAX_HISTORY = 1000


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to build data, model and trainer. Plain JSON-able data."""

    dataset: str = "pinwheel"  # a name from vmonf.data.TOY_DATASETS or IMAGE_DATASETS
    n_samples: int = 1000  # toy data: points to generate
    data_seed: int = 0  # seed of the data generator
    toy_params: dict = field(default_factory=dict)  # e.g. {"wings": 3, "rate": 0.25}
    image_params: dict = field(default_factory=dict)  # e.g. {"source": "embedded"}
    classes: list[int] | None = None  # image data: keep only these labels
    pca: int = 16  # image data: PCA-whitened dimensions
    labelled_per_class: int = 0  # semi-supervised: labels revealed per class
    model: dict = field(default_factory=dict)  # ModelConfig fields except n_components/dim
    n_components: int = 5
    train: dict = field(default_factory=dict)  # TrainConfig fields
    device: str = "auto"
    threads: int = 1  # torch intra-op threads; 1 is fastest for small models beside a server
    max_steps: int = 0  # pause when reached; 0 = run until stopped
    snapshot_interval: float = 0.15  # seconds between snapshots while running (the live chart shows each)
    grid: int = 64  # density grid (2-D): 64x64 costs ~19 ms a frame at K=5, 80x80 ~27 ms, 100x100 ~48 ms
    val_fraction: float = 0.1  # held-out points for the validation curve and best state
    points: list | None = None  # dataset "csv": the user's own 2-D points
    point_labels: list | None = None  # ... and their labels, if the file had a label column

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> JobSpec:
        return JobSpec(**json.loads(text))


def write_message(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(kind + struct.pack(">I", len(payload)) + payload)
    out.flush()


def read_message(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """Read one message; ``None`` at end of stream."""
    head = stream.read(5)
    if len(head) < 5:
        return None
    (n,) = struct.unpack(">I", head[1:])
    payload = stream.read(n)
    return (head[:1], payload) if len(payload) == n else None


class Session:
    """Builds everything from a spec and runs the control loop."""

    def __init__(self, spec: JobSpec, out: BinaryIO):
        import torch

        from vmonf.data import Dataset, augmented_features, load_dataset, pick_labels
        from vmonf.model import ModelConfig
        from vmonf.snapshot import make_view
        from vmonf.train import TrainConfig, resolve_device, start_training

        self.spec, self.out = spec, out
        torch.set_num_threads(max(1, spec.threads))
        self.device = resolve_device(spec.device)
        if spec.dataset == "csv":
            x = np.asarray(spec.points, dtype=np.float32).reshape(-1, 2)
            y = None if spec.point_labels is None else np.asarray(spec.point_labels, dtype=np.int64)
            data = Dataset("csv", x, y)
        else:
            data = load_dataset(spec.dataset, n=spec.n_samples, seed=spec.data_seed, pca=spec.pca,
                                classes=spec.classes, toy_params=spec.toy_params, **spec.image_params)
            x, y = data.x, data.y
        if y is None and spec.labelled_per_class:
            raise ValueError("Semi-supervised mode needs labels: add a third column with them to the CSV.")
        if spec.n_components > len(x):
            raise ValueError(f"K={spec.n_components} is more than the {len(x)} data points.")
        labels = None if y is None else pick_labels(y, spec.labelled_per_class, spec.data_seed, spec.n_components)
        config = TrainConfig(**spec.train)
        # Images are perturbed by shifts and rotations of their pixels (4 copies, made once); 2-D points by noise.
        perturbed = augmented_features(data, copies=4, seed=spec.data_seed) if (
            config.consistency and data.image_shape is not None) else None
        self.event("initializing", message="Choosing a starting point for the components...")
        result = start_training(x, labels, ModelConfig(spec.n_components, x.shape[1], **spec.model), config,
                                device=self.device, val_fraction=spec.val_fraction, x_perturbed=perturbed)
        self.trainer = result.trainer
        self.init_method = result.init_method
        to_images = data.to_images if data.image_shape else None
        self.view = make_view(x, y, labels >= 0 if labels is not None else None, grid=spec.grid,
                              seed=spec.data_seed, to_images=to_images,
                              max_points=2000 if data.image_shape is None else 1500)
        self.history: list[dict] = []
        self.state = "running"
        self.rate = 0.0
        self.step_budget = 0
        self.finish_at = spec.max_steps

    # -- messages ---------------------------------------------------------------------------------
    def event(self, state: str, **info) -> None:
        write_message(self.out, EVENT, json.dumps({"state": state, **info}).encode())

    def snapshot(self) -> None:
        from vmonf.snapshot import take_snapshot

        tr = self.trainer
        row = tr.evaluate()
        self.history = append_bounded(self.history, row, MAX_HISTORY)
        meta = {"step": tr.step_count, "steps_per_sec": self.rate, "state": self.state, "elapsed": tr.train_seconds,
                "init": self.init_method, "device": str(self.device), "temperature": tr.temperature(),
                "loss": row["loss"], "dataset": self.spec.dataset}
        snap = take_snapshot(tr.model, self.view, self.history, meta, seed=self.spec.data_seed)
        write_message(self.out, SNAPSHOT, snap.to_bytes())

    def checkpoint(self) -> None:
        from vmonf.checkpoint import checkpoint_bytes

        extra = {"spec": json.loads(self.spec.to_json()), "step": self.trainer.step_count,
                 "best_step": self.trainer.best_step}
        write_message(self.out, CHECKPOINT, checkpoint_bytes(self.trainer.model, extra))

    # -- control loop -----------------------------------------------------------------------------
    def announce(self, state: str, **info) -> None:
        """Enter ``state``: send a snapshot of it first, then the event, so whoever sees the new state
        already has its frame (a test saw "paused" arrive before the paused step's snapshot)."""
        self.state = state
        self.snapshot()
        self.event(state, **info)

    def handle(self, cmd: dict) -> bool:
        """Apply one command; ``False`` means stop."""
        name = cmd.get("cmd")
        if name == "stop":
            return False
        state = self.state
        if name == "pause":
            state = "paused"
        elif name == "resume" and self.state in ("paused", "finished", "diverged"):
            state = "running"
        elif name == "step":
            self.step_budget = max(1, int(cmd.get("n", 50)))
            state = "stepping"
        elif name == "remove":
            try:
                removed = self.trainer.remove([int(cmd.get("component", -1))])
            except (TypeError, ValueError):
                removed = []
            self.announce(self.state, message=f"Removed component {removed[0] + 1}." if removed else
                          "That component stays: it is gone already, it is the last one, or labelled points "
                          "belong to it.")
            return True
        if state != self.state:
            self.announce(state)
        else:
            self.event(state)
        return True

    def run(self, commands: queue.Queue) -> None:
        from vmonf.train import DivergenceError

        self.announce("running", init=self.init_method, device=str(self.device))
        last_snap, window_t, window_steps, snap_cost = time.perf_counter(), time.perf_counter(), 0, 0.0
        while True:
            try:  # block while idle; while training, only look
                cmd = commands.get(block=self.state not in ("running", "stepping"))
            except queue.Empty:
                cmd = None
            if cmd is not None:
                if not self.handle(cmd):
                    break
                continue
            try:
                self.trainer.step()
            except DivergenceError as exc:
                self.announce("diverged", message=str(exc))
                continue
            window_steps += 1
            now = time.perf_counter()
            if now - window_t >= 0.5:
                self.rate, window_t, window_steps = window_steps / (now - window_t), now, 0
            if self.state == "stepping":
                self.step_budget -= 1
                if self.step_budget <= 0:
                    self.announce("paused")
                    continue
            if self.finish_at and self.trainer.step_count >= self.finish_at:
                self.finish_at = 0  # Resume after this trains on without a limit
                self.announce("finished", message=f"Reached {self.spec.max_steps} steps.")
                continue
            # At least snapshot_interval apart, and at least 4x a snapshot's own cost, so snapshots
            # never take more than ~20 % of the worker's time, whatever the model or grid size.
            if now - last_snap >= max(self.spec.snapshot_interval, 4 * snap_cost):
                self.snapshot()
                last_snap = time.perf_counter()
                snap_cost = last_snap - now
        self.snapshot()
        self.checkpoint()
        self.event("stopped")


def _read_commands(stream, commands: queue.Queue) -> None:
    for line in stream:
        try:
            commands.put(json.loads(line))
        except json.JSONDecodeError:
            continue
    commands.put({"cmd": "stop"})  # parent went away: stop cleanly


#: Scheduling priority of workers (POSIX nice). On a busy machine the server and the browser win the CPU,
#: so every page stays responsive while many runs train; on an idle machine training speed is unchanged.
NICE = int(os.environ.get("VMONF_WORKER_NICE", "10"))


def lower_priority(nice: int = NICE) -> None:
    """Lower this process's CPU priority by ``nice``.

    On Linux with autogroup scheduling (the default on desktops and these machines), a plain nice only
    ranks a process against others of its own session, and each worker has its own session (``TrainingJob``
    starts it so): 8 workers
    then took 8/10 of the CPU from the browser and the server whatever their nice (a page answered a
    click in 18 s). Setting the nice of the worker's autogroup too is what makes it yield.
    """
    if not nice or not hasattr(os, "nice"):
        return
    os.nice(nice)
    if os.getsid(0) != os.getpid():
        return  # not in a session of its own (run by hand): its autogroup is the caller's, leave it be
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroup scheduling here: the plain nice is enough


def main() -> int:
    lower_priority()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the message stream
    line = sys.stdin.readline()
    try:
        spec = JobSpec.from_json(line)
        session = Session(spec, out)
    except (ValueError, TypeError) as exc:
        write_message(out, EVENT, json.dumps({"state": "error", "message": str(exc)}).encode())
        return 2
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_read_commands, args=(sys.stdin, commands), daemon=True).start()
    try:
        session.run(commands)
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

