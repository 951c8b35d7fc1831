"""The training worker process: ``python -m vmonf.studio.worker`` reads a :class:`JobSpec` and control commands
on stdin, trains, and writes framed messages (snapshots, events, the final checkpoint) on stdout.

Why a process: an optimisation loop in a thread of the Streamlit server ran at 10-25 % of its
headless speed once a live chart was open (it loses the GIL); a worker process ran at 100 %
(docs/RESULTS.md, "Early measurements"). It is started with ``subprocess`` so it never imports the app's pages.

Wire format, both directions pickle-free:
- stdin: one JSON line with the spec, then JSON command lines: ``{"cmd": "pause" | "resume" | "stop"}``,
  ``{"cmd": "step", "n": 50}``, ``{"cmd": "remove", "component": 2}`` (take a component out of the mixture),
  ``{"cmd": "probe", "x": [0.5, -1.0], "id": 3}`` (the model's numbers at one point, answered by an event
  ``{"probe": {...}}`` without a state, :func:`probe_numbers`), ``{"cmd": "stages", "component": 1, "id": 4}``
  (one flow layer by layer, :func:`vmonf.studio.capture.flow_stages`, answered by ``{"stages": {...}}``),
  ``{"cmd": "label", "point": 17, "label": 2}`` (the view's point 17 is labelled cluster 3 from now on),
  ``{"cmd": "data", "spec": "<JobSpec JSON>", "id": 5}`` (train on edited points from now on: only the
  :data:`DATA_FIELDS` may differ), ``{"cmd": "frames", "full": true}`` (draw every frame full, not most of
  them light: a view shows the warp lines).
- stdout: messages ``kind (1 byte) | length (4 bytes, big-endian) | payload`` with kind ``S`` (snapshot,
  :meth:`~vmonf.studio.snapshot.Snapshot.to_wire`), ``E`` (event JSON: state changes, errors) or ``C``
  (checkpoint bytes, sent on stop).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import BinaryIO

import numpy as np

from vmonf.history import append_bounded
from vmonf.studio.snapshot import pack, unpack
from vmonf.studio.states import HALTED, TRAINING
from vmonf.studio.states import RunState as S

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
    snapshot_interval: float = 0.1  # seconds between snapshots while running (the live chart shows each)
    grid: int = 64  # density grid (2-D): 64x64 costs ~19 ms a frame at K=5, 80x80 ~27 ms, 100x100 ~48 ms
    val_fraction: float = 0.1  # held-out points for the validation curve and best state
    points: list | None = None  # dataset "csv": the user's own 2-D points (uploaded, drawn or edited)
    point_labels: list | None = None  # ... their true clusters, if known (-1 where one is not)
    given_labels: list | None = None  # ... labels the user gave by hand (-1 unlabelled): semi-supervised
    bounds: list | None = None  # [x0, x1, y0, y1] the density grid covers at least (a drawing canvas)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def same_but_data(self, other: JobSpec) -> bool:
        """``other`` differs from this spec in its data alone (:data:`DATA_FIELDS`): a run can go on with it."""
        return replace(other, **{f: getattr(self, f) for f in DATA_FIELDS}) == self

    @staticmethod
    def from_json(text: str) -> JobSpec:
        return JobSpec(**json.loads(text))


#: The JobSpec fields that say which points a run trains on; a running job may change these alone (edited points).
DATA_FIELDS = ("dataset", "n_samples", "data_seed", "toy_params", "labelled_per_class", "points", "point_labels",
               "given_labels", "bounds")


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


def load_spec_data(spec: JobSpec):
    """The spec's data set and its revealed labels (``-1`` unlabelled, or ``None``); ``ValueError`` if unusable."""
    from vmonf.data import load_dataset, pick_labels

    if spec.dataset == "csv":
        data = _own_points(spec)[0]
    else:
        data = load_dataset(spec.dataset, n=spec.n_samples, seed=spec.data_seed, pca=spec.pca, classes=spec.classes,
                            toy_params=spec.toy_params, **spec.image_params)
    if data.y is None and spec.labelled_per_class:
        raise ValueError("Semi-supervised mode needs labels: add a third column with them to the CSV.")
    if spec.n_components > len(data.x):
        raise ValueError(f"K={spec.n_components} is more than the {len(data.x)} data points.")
    labels = None if data.y is None else pick_labels(data.y, spec.labelled_per_class, spec.data_seed,
                                                     spec.n_components)
    if spec.given_labels is not None:
        given = np.asarray(spec.given_labels, dtype=np.int64).reshape(-1)
        if len(given) != len(data.x):
            raise ValueError(f"{len(given)} given labels for {len(data.x)} points.")
        if given.min(initial=-1) < -1 or given.max(initial=-1) >= spec.n_components:
            raise ValueError(f"Given labels must be clusters 1 to K={spec.n_components}.")
        labels = given if labels is None else np.where(given >= 0, given, labels)
    return data, labels


def _own_points(spec: JobSpec):
    """The user's own points and given labels as they are, unchecked (an empty canvas included)."""
    from vmonf.data import Dataset

    x = np.asarray(spec.points, dtype=np.float32).reshape(-1, 2)
    y = None if spec.point_labels is None else np.asarray(spec.point_labels, dtype=np.int64)
    given = None if spec.given_labels is None else np.asarray(spec.given_labels, dtype=np.int64)
    return Dataset("csv", x, y), given


def spec_view(spec: JobSpec, data, labels):
    """The points, grid and sample noise every frame of the run shows (:func:`vmonf.studio.capture.make_view`)."""
    from vmonf.studio.capture import make_view

    images = data.image_shape is not None
    return make_view(data.x, data.y, labels, grid=spec.grid, seed=spec.data_seed, bounds=spec.bounds,
                     to_images=data.to_images if images else None, max_points=1500 if images else 2000)


def preview_frame(spec: JobSpec):
    """The run's first frame, its 2-D points alone, made without a worker (the chart shows it before Start
    and until the worker's frames arrive). ``None`` for image data, or data the worker would refuse."""
    from vmonf.data import IMAGE_DATASETS
    from vmonf.studio.capture import data_snapshot

    if spec.dataset in IMAGE_DATASETS:
        return None
    try:
        data, labels = load_spec_data(spec)
    except ValueError:
        if spec.dataset != "csv" or spec.points is None:
            return None
        data, labels = _own_points(spec)  # drawn points, too few to train on yet: shown all the same
    meta = {"step": 0, "state": "created", "stage": "data", "dataset": spec.dataset}
    return data_snapshot(spec_view(spec, data, labels), spec.n_components, meta)


def probe_numbers(model, x, temperature: float = 1.0) -> dict | None:
    """The point probe's numbers at ``x`` (a list of ``dim`` numbers) from the library
    (:meth:`vmonf.model.VMoNFModel.explain`), as JSON-able lists; ``None`` when ``x`` is not such a point."""
    import torch

    try:
        point = torch.tensor([[float(v) for v in x]], dtype=model.shift.dtype, device=model.shift.device)
    except (TypeError, ValueError):
        return None
    if point.shape[1] != model.config.dim or not bool(torch.isfinite(point).all()):
        return None
    t = model.explain(point, temperature)
    out: dict = {"x": [float(v) for v in x]}
    out.update({name: getattr(t, name)[0].cpu().tolist() for name in ("q", "p", "log_joint")})
    out.update({name: float(getattr(t, name)[0]) for name in ("log_p", "elbo", "gap")})
    return out


class FrameDrawer:
    """Draws one frame of a model (curve row, densities, assignments) and hands it to ``send``; keeps the
    curves, one list per candidate initialisation (a job's ``"history"`` key)."""

    def __init__(self, view, seed: int, send) -> None:
        self.view, self.seed, self.send = view, seed, send
        self.histories: dict[str, list[dict]] = {}

    def draw(self, model, job: dict) -> None:
        with model.flows.same_weights():  # every pass of the frame folds each conditioner once
            self._draw(model, job)

    def _draw(self, model, job: dict) -> None:
        from vmonf.studio.capture import record_scores, take_snapshot
        from vmonf.train import evaluation_row

        row = {key: job[key] for key in ("step", "loss", "temperature", "seconds")}
        row.update(evaluation_row(model, job["x_val"], job["temperature"]))
        key = job["history"]
        history = self.histories[key] = append_bounded(self.histories.get(key, []), row, MAX_HISTORY)
        if len(history) > 1 and history[-2]["step"] > row["step"]:
            # A late frame (Session.begin): its row goes in step order, and its curves end at its own step.
            history = self.histories[key] = sorted(history, key=lambda r: r["step"])
            history = history[: next(i for i, r in enumerate(history) if r is row) + 1]
        meta = {**job["meta"], "temperature": row["temperature"], "loss": row["loss"]}
        snap = take_snapshot(model, self.view, history, meta, seed=self.seed, full=job.get("full", True))
        record_scores(history, snap)
        self.send(snap)


class ProcessRenderer:
    """Draws the live frames of a 2-D run in a process of its own, at the lowest CPU priority.

    In a thread of the worker (:class:`Renderer`) frames share the GIL with training: the worker never
    used more than about one core, and training kept ~70-80 % of its speed at 5-8 frames a second. This
    process is forked from the worker before the worker starts any thread; it gets each frame's weights
    through a pipe (:func:`~vmonf.studio.snapshot.pack`), draws, and sends the frame back, which the worker's
    forwarding thread writes to the stream. Training keeps its core; frames use what the machine has left
    (docs/RESULTS.md, "Frames in a process"). Same interface as :class:`Renderer`.
    """

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid = pid
        self._to = os.fdopen(to_child, "wb")
        self._from = os.fdopen(from_child, "rb")
        self._cv = threading.Condition()
        self._busy = False
        self._set_up = False
        self._sent_at = 0.0
        self.cost = 0.0  # seconds from asking for the last frame to having it
        self.alive = True
        self.forward = None  # forward(snapshot bytes): set by the session; called in the forwarding thread

    @staticmethod
    def fork() -> ProcessRenderer | None:
        """Fork the drawing process now (only where ``fork`` exists; call it before starting any thread)."""
        if not (hasattr(os, "fork") and sys.platform.startswith("linux")) or os.environ.get("VMONF_FRAME_PROCESS",
                                                                                              "1") == "0":
            return None
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(down_w)
            os.close(up_r)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)  # the worker's stdin and stdout belong to the server: holding them would keep
            os.dup2(devnull, 1)  # the server's end from seeing the worker exit
            code = 1
            try:
                code = _draw_frames(down_r, up_w)
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        return ProcessRenderer(pid, down_w, up_r)

    def start(self, forward) -> None:
        self.forward = forward
        threading.Thread(target=self._read, name="vmonf-frames-in", daemon=True).start()

    def submit(self, model, job: dict) -> bool:
        with self._cv:
            if self._busy or not self.alive:
                return False
            self._busy = True
        try:
            if not self._set_up:
                self._set_up = True
                view = self._view
                x_val = job["x_val"]
                fields = {"points": view.points, "grid_x": view.grid_x, "grid_y": view.grid_y,
                          "x_val": np.zeros((0, view.points.shape[1]), np.float32) if x_val is None else
                          x_val.cpu().numpy()}
                fields.update({k: v for k, v in (("y_true", view.y_true), ("labelled", view.labelled),
                                                 ("given", view.given)) if v is not None})
                setup = {"config": model.config.to_dict(), "seed": self._seed, "n_samples": view.n_samples}
                write_message(self._to, b"V", pack(setup, fields))
            state = {k: v.detach() for k, v in model.state_dict().items()}
            meta = {k: v for k, v in job.items() if k != "x_val"}
            self._sent_at = time.perf_counter()
            if any(v.device.type != "cpu" for v in state.values()):
                # A copy from an accelerator to the host waits for every queued step; made in a thread of its
                # own from a clone on the device, it leaves the training thread queueing steps meanwhile.
                state = {k: v.clone() for k, v in state.items()}
                threading.Thread(target=self._send, args=(meta, state), name="vmonf-frames-out", daemon=True).start()
            else:
                self._send(meta, state)
        except (BrokenPipeError, OSError, ValueError):
            self._gone()
            return False
        return True

    def _send(self, meta: dict, state: dict) -> None:
        try:
            arrays = {k: v.cpu().numpy() for k, v in state.items()}
            write_message(self._to, b"M", pack(meta, arrays))
        except (BrokenPipeError, OSError, ValueError):
            self._gone()

    def wait(self, timeout: float = 30.0) -> bool:
        """Until the frame being drawn has been sent; ``False`` if it has not after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._busy and self.alive and time.monotonic() < end:
                self._cv.wait(0.1)
            return not self._busy

    def _read(self) -> None:
        while (msg := read_message(self._from)) is not None:
            self.cost = time.perf_counter() - self._sent_at
            try:
                self.forward(msg[1])
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
        self._gone()

    def _gone(self) -> None:
        with self._cv:
            self.alive = self._busy = False
            self._cv.notify_all()

    def configure(self, view, seed: int) -> None:
        """Draw ``view`` from the next frame on (before :meth:`start`, or when the run's points were edited;
        the curves go on)."""
        self._view, self._seed, self._set_up = view, seed, False

    def close(self) -> None:
        """End the drawing process (it reads the end of its input and exits)."""
        with contextlib.suppress(OSError):
            self._to.close()
        self._gone()


def _draw_frames(down: int, up: int) -> int:
    """The drawing process: frames of the models the worker sends, until its pipe closes."""
    import torch

    from vmonf.model import ModelConfig, VMoNFModel
    from vmonf.studio.capture import View

    boost = threading.Timer(START_BOOST, lower_thread_priority, kwargs={"tid": threading.get_native_id()})
    boost.start()
    torch.set_num_threads(1)
    source, sink = os.fdopen(down, "rb"), os.fdopen(up, "wb")
    drawer = model = x_val = None
    while (msg := read_message(source)) is not None:
        kind, payload = msg
        info, arrays = unpack(payload)
        arrays = {k: np.array(a) for k, a in arrays.items()}  # writable: torch takes them as they are
        if kind == b"V":
            v = {k: arrays.get(k) for k in ("points", "y_true", "labelled", "grid_x", "grid_y", "given")}
            view = View(v["points"], v["y_true"], v["labelled"], v["grid_x"], v["grid_y"], n_samples=info["n_samples"],
                        given=v["given"])
            x_val = torch.as_tensor(arrays["x_val"]) if arrays["x_val"].size else None
            model = VMoNFModel(ModelConfig(**info["config"]))
            curves = drawer.histories if drawer is not None else {}  # edited points: the curves go on
            drawer = FrameDrawer(view, info["seed"], lambda snap: write_message(sink, SNAPSHOT, snap.to_wire()))
            drawer.histories = curves
        elif kind == b"M" and drawer is not None:
            model.load_state_dict({k: torch.from_numpy(a) for k, a in arrays.items()})
            drawer.draw(model, {**info, "x_val": x_val})
            if boost is not None and info.get("step", 0) > 0 and info.get("meta", {}).get("stage") == "training":
                boost.cancel()  # the first trained frame is drawn: the start is over (START_BOOST)
                boost = None
                lower_thread_priority()
    return 0


class Renderer:
    """Draws live frames in a thread of the worker, on a copy of the model, while training goes on.

    A frame (a 64x64 density grid through every flow, the points, samples) costs several training steps.
    Drawn inline, frames took a quarter of the worker's time and came about 4 times a second; here the
    training thread only copies the weights (~0.1 ms) and trains on. torch releases the GIL inside each
    operation, and a frame's operations are large, so it runs on the machine's other core
    (docs/RESULTS.md, "Frames in a thread"). One frame at a time: while one is drawn, no other is asked for.
    """

    def __init__(self, draw) -> None:
        self._draw = draw  # draw(model, job): evaluates and sends one frame
        self._cv = threading.Condition()
        self._job: tuple[dict, dict] | None = None
        self._busy = False
        self._model = None
        self.cost = 0.0  # seconds the last frame took to draw
        threading.Thread(target=self._loop, name="vmonf-frames", daemon=True).start()

    def submit(self, model, job: dict) -> bool:
        """Draw ``model`` as it is now; ``False`` (nothing done) while the last frame is still being drawn."""
        with self._cv:
            if self._busy:
                return False
            if self._model is None:
                self._model = copy.deepcopy(model)  # every model of a run has one architecture
            self._job = ({k: v.detach().clone() for k, v in model.state_dict().items()}, job)
            self._busy = True
            self._cv.notify_all()
        return True

    def wait(self) -> None:
        """Until the frame being drawn has been sent."""
        with self._cv:
            while self._busy:
                self._cv.wait()

    def _loop(self) -> None:
        lower_thread_priority()
        while True:
            with self._cv:
                while self._job is None:
                    self._cv.wait()
                (state, job), self._job = self._job, None
            t0 = time.perf_counter()
            try:
                self._model.load_state_dict(state)
                self._draw(self._model, job)
                self.cost = time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - a frame that fails must not end training: say so, go on
                import traceback

                traceback.print_exc()
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()


class Session:
    """Builds everything from a spec and runs the control loop.

    :meth:`prepare` shows the run as it is set up: a frame of the data alone, then each candidate
    initialisation's partition and its first training steps (meta ``stage``: ``data``, ``partition``,
    ``candidate``), so nothing is a blank wait. :meth:`run` then trains (``stage`` ``training``).
    """

    def __init__(self, spec: JobSpec, out: BinaryIO, commands: queue.Queue | None = None,
                 frame_process: ProcessRenderer | None = None):
        self.spec, self.out = spec, out
        self.frame_process = frame_process  # forked before any thread started; used for 2-D data
        self.commands = commands if commands is not None else queue.Queue()
        self.pending: list[dict] = []  # commands that arrived while the start was being chosen
        self.history_key = ""  # whose curves a frame continues: "" or, while choosing, the candidate's name
        self.drawer: FrameDrawer | None = None
        self.renderer: ProcessRenderer | Renderer | None = None  # draws frames while training goes on; None: inline
        self._out_lock = threading.Lock()  # the renderer's frames and this thread's events share the stream
        self.state = S.INITIALIZING
        self.stage, self.candidate = "data", {}
        self.rate = 0.0
        self.step_budget = 0
        self.finish_at = spec.max_steps
        self.trainer = None
        self.init_method, self.init_scores, self.init_skipped = "", {}, {}
        self.init_criterion = ""  # what init_scores holds: "cut", "elbo" or "" (see FitResult)
        self._last_snap = self._window_t = time.perf_counter()
        self.trained_frame_sent = False  # a frame of the kept start after its first training step
        self._window_steps, self._snap_cost = 0, 0.0
        self.full_frames = False  # every frame full (the "frames" command: a view shows the warp lines live)
        self._last_full = -math.inf  # when the last full frame was asked for (FULL_EVERY)
        self.start_done: Callable[[], object] = lambda: None  # after the first trained frame (main: START_BOOST)
        self._late_start: tuple | None = None  # (model at step 0, its frame job, the RUNNING event): see run()

    def start_renderer(self) -> None:
        """Draw frames beside training from now on: in the drawing process for 2-D data where there is one,
        else in a thread (a fork server's warm-up starts neither: it forks afterwards)."""
        process, self.frame_process = self.frame_process, None
        if process is not None and self.view.grid_x is not None:
            process.configure(self.view, self.spec.data_seed)
            process.start(self._forward)
            self.renderer = process
            return
        if process is not None:
            process.close()
        self.renderer = Renderer(self.drawer.draw)

    def _forward(self, frame: bytes) -> None:
        with self._out_lock:
            write_message(self.out, SNAPSHOT, frame)

    def prepare(self, render_thread: bool = True, keep_start: bool = True) -> None:
        """Load the data, show it, choose the initialisation while showing it. Raises ``ValueError`` for a bad spec.

        ``keep_start``: replay the start this server chose for the same run before, or keep this one for the next
        (:mod:`vmonf.startmemo`; the server names the folder in ``VMONF_START_MEMO``)."""
        import torch

        from vmonf.data import augmented_features
        from vmonf.devices import describe_device, resolve_device
        from vmonf.model import ModelConfig
        from vmonf.startmemo import StartMemo
        from vmonf.starts import split_indices, start_training
        from vmonf.studio.capture import data_snapshot
        from vmonf.train import TrainConfig

        spec = self.spec
        torch.set_num_threads(max(1, spec.threads))
        self.device = resolve_device(spec.device)
        self.device_name = describe_device(self.device)  # "cuda:0 (NVIDIA ...)": the status shows which GPU
        data, labels = load_spec_data(spec)
        x = data.x
        config = TrainConfig(**spec.train)
        self.view = spec_view(spec, data, labels)
        self.drawer = FrameDrawer(self.view, spec.data_seed, self.send)
        if render_thread:
            self.start_renderer()
        if data.image_shape is None:
            self.send(data_snapshot(self.view, spec.n_components, self.meta(0)))
        self.event(S.INITIALIZING, message="Choosing how the components start…", device=self.device_name)
        # Images are perturbed by shifts and rotations of their pixels (4 copies, made once); 2-D points by noise.
        perturbed = augmented_features(data, copies=4, seed=spec.data_seed) if (
            config.consistency and data.image_shape is not None) else None
        result = start_training(x, labels, ModelConfig(spec.n_components, x.shape[1], **spec.model), config,
                                device=self.device, val_fraction=spec.val_fraction, x_perturbed=perturbed,
                                on_event=self.on_start_event, give_up=self.poll_stop,
                                memo=StartMemo.from_env() if keep_start else None)
        self.trainer = result.trainer
        train_rows, _ = split_indices(len(x), config.seed, spec.val_fraction)  # the split start_training made
        self.track_rows(train_rows)
        self.init_method, self.init_scores, self.init_skipped = result.init_method, result.candidates, result.skipped
        self.init_criterion = result.criterion
        if result.criterion == "elbo":  # the kept candidate's curves go on
            self.history_key = self.init_method

    def track_rows(self, train_rows) -> None:
        """Remember which data row each training row is (label clicks name data rows) and how many are labelled."""
        self.train_row = {int(r): i for i, r in enumerate(train_rows)}  # data row -> the trainer's row
        self.n_labels = 0 if self.trainer.y is None else int((self.trainer.y >= 0).sum())

    # -- messages ---------------------------------------------------------------------------------
    def event(self, state: S, **info) -> None:
        with self._out_lock:
            write_message(self.out, EVENT, json.dumps({"state": S(state).value, **info}).encode())

    def answer(self, name: str, cmd: dict, answer: dict | None) -> None:
        """Answer the question ``cmd`` (``name``: probe, stages) with an event that changes no state;
        nothing is sent for a question that had no answer (a malformed point, a component out of range)."""
        if answer is None:
            return
        answer.update(id=cmd.get("id"), step=self.trainer.step_count)
        with self._out_lock:
            write_message(self.out, EVENT, json.dumps({name: answer}).encode())

    def send(self, snap) -> None:
        data = snap.to_wire()
        with self._out_lock:
            write_message(self.out, SNAPSHOT, data)

    def meta(self, step: int) -> dict:
        return {"step": step, "steps_per_sec": self.rate, "state": self.state, "stage": self.stage,
                "dataset": self.spec.dataset, "init": self.init_method, **self.candidate}

    def snapshot(self, now: bool = False) -> None:
        """Send a frame of the trainer's model: drawn by the renderer while training goes on, or (``now``) before
        this returns, after any frame in progress, so it arrives before whatever is sent next."""
        tr = self.trainer
        job = self._frame_job()
        at = time.perf_counter()
        # Light frames between full ones (FULL_EVERY); a frame that must arrive now is a state or the end: full.
        job["full"] = full = (now or self.full_frames or self.stage != "training"
                              or at - self._last_full >= FULL_EVERY)
        renderer = self.renderer
        if now and renderer is not None:
            if isinstance(renderer, Renderer):
                renderer.wait()
            elif renderer.wait(NOW_WAIT) and renderer.submit(tr.model, job) and renderer.wait(NOW_WAIT):
                self._sent(full)
                return
            renderer = None  # a thread, a gone process, or one starved of CPU (a busy machine): draw here
        if renderer is None:
            t0 = time.perf_counter()
            self.drawer.draw(tr.model, job)
            self._snap_cost = time.perf_counter() - t0
        elif not renderer.submit(tr.model, job):
            return  # still drawing the last one: try again after the next step
        self._sent(full)

    def _frame_job(self) -> dict:
        """What a frame of the trainer's model is drawn with, besides the model."""
        tr = self.trainer
        return {**tr.progress(), "x_val": tr.x_val, "history": self.history_key,
                "meta": {**self.meta(tr.step_count), "elapsed": tr.train_seconds, "device": self.device_name}}

    def _sent(self, full: bool = True) -> None:
        self._last_snap = time.perf_counter()
        if full:
            self._last_full = self._last_snap
        self.trained_frame_sent = self.trained_frame_sent or (self.stage == "training" and self.trainer.step_count > 0)

    def checkpoint(self) -> None:
        from vmonf.checkpoint import checkpoint_bytes

        extra = {"spec": json.loads(self.spec.to_json()), "step": self.trainer.step_count,
                 "best_step": self.trainer.best_step}
        write_message(self.out, CHECKPOINT, checkpoint_bytes(self.trainer.model, extra))

    def stepped(self) -> None:
        """After a training step: update the speed, and send a frame when one is due."""
        self._window_steps += 1
        now = time.perf_counter()
        if now - self._window_t >= 0.5:
            self.rate, self._window_t, self._window_steps = self._window_steps / (now - self._window_t), now, 0
        # Inline frames at least 4x a frame's own cost apart, so they never take more than ~20 % of the worker's
        # time, whatever the model or grid size; a drawing thread's at least 2x apart, as it shares the GIL with
        # training (docs/RESULTS.md). The drawing process takes the next frame as soon as it is free.
        if self.renderer is None:
            spacing = 4 * self._snap_cost
        else:
            spacing = (2.0 if isinstance(self.renderer, Renderer) else FRAME_SPACING) * self.renderer.cost
        if not self.trained_frame_sent and self.stage == "training":
            # The first trained frame is the one a user waits for after Start: training waits until it is drawn,
            # so the drawing process has this run's CPU to itself meanwhile (with four runs starting together,
            # it drew beside its own training and three others' at the same priority).
            self.snapshot(now=True)
            self.start_done()
            self.begin()
            return
        if now - self._last_snap >= max(self.spec.snapshot_interval, spacing):
            self.snapshot()

    # -- the start, shown as it is chosen ---------------------------------------------------------
    def on_start_event(self, ev) -> bool:
        """:func:`~vmonf.starts.choose_start` progress: frames of each candidate. ``True`` (cut the choice
        short) once a stop has arrived."""
        from vmonf.studio.capture import data_snapshot

        several = ev.total > 1
        training = several and ev.trainer is not None  # the ELBO rule trains each candidate; the cut rule none
        self.candidate = {"candidate": ev.candidate, "candidate_index": ev.index, "candidate_total": ev.total,
                          "init_steps": ev.trainer.config.init_steps if training else 0}
        if ev.stage == "partition":
            self.stage = "partition"
            if ev.score is not None:
                self.candidate["cut"] = ev.score
            # A replayed start sends its candidates all at once: only the kept one's frame would be seen, and
            # each frame costs the server a figure (with four sessions starting together, at the busiest moment).
            if self.view.grid_x is not None and not (ev.replayed and ev.trainer is None):
                self.send(data_snapshot(self.view, self.spec.n_components, self.meta(0),
                                        assign=ev.partition[self.view.index]))
            if ev.replayed and ev.trainer is not None:
                message = f"Initialisation {ev.candidate}: kept from this server's last start of the same run"
            elif ev.score is not None:
                message = (f"Initialisation {ev.candidate} ({ev.index}/{ev.total}): normalised cut {ev.score:.3f} "
                           "(the lowest is kept)")
            else:
                message = f"Initialisation {ev.candidate} ({ev.index}/{ev.total}): fitting q(c|x) to its partition…"
            self.event(S.INITIALIZING, message=message)
            return self.poll_stop()
        if not several:
            return self.poll_stop()  # the one start: run() shows it from step 0
        self.trainer = ev.trainer
        self.history_key = ev.candidate
        self.stage = "candidate"
        if ev.stage in ("initialized", "scored"):
            self.snapshot(now=True)  # its start and its last state before the choice are always shown
            if ev.stage == "initialized":
                self.event(S.INITIALIZING, message=f"Initialisation {ev.candidate} ({ev.index}/{ev.total}): "
                                                   f"training it {ev.trainer.config.init_steps} steps…")
        else:
            self.stepped()
        return self.poll_stop()

    def poll_stop(self) -> bool:
        """Keep the commands that arrived; ``True`` if one of them is a stop."""
        while True:
            try:
                self.pending.append(self.commands.get_nowait())
            except queue.Empty:
                return any(c.get("cmd") == "stop" for c in self.pending)

    # -- control loop -----------------------------------------------------------------------------
    def announce(self, state: str, **info) -> None:
        """Enter ``state``: send a snapshot of it first, then the event, so whoever sees the new state
        already has its frame (a test saw "paused" arrive before the paused step's snapshot)."""
        self.state = state
        self.snapshot(now=True)
        self.event(state, **info)

    def handle(self, cmd: dict) -> bool:
        """Apply one command; ``False`` means stop."""
        name = cmd.get("cmd")
        if name == "stop":
            return False
        state = self.state
        if name == "pause":
            state = S.PAUSED
        elif name == "resume" and self.state in HALTED:
            state = S.RUNNING
        elif name == "step":
            self.step_budget = max(1, int(cmd.get("n", 50)))
            state = S.STEPPING
        elif name == "probe":
            self.answer("probe", cmd, probe_numbers(self.trainer.model, cmd.get("x"), self.trainer.temperature()))
            return True
        elif name == "stages":
            from vmonf.studio.capture import flow_stages

            try:
                answer = flow_stages(self.trainer.model, int(cmd.get("component", 0)), self.view.points,
                                     seed=self.spec.data_seed)
            except (TypeError, ValueError):
                answer = None
            self.answer("stages", cmd, answer)
            return True
        elif name == "label":
            self.label(cmd)
            return True
        elif name == "data":
            self.edit_data(cmd)
            return True
        elif name == "frames":
            self.full_frames = bool(cmd.get("full"))
            return True
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

    def label(self, cmd: dict) -> None:
        """Give the view's point ``cmd["point"]`` the label ``cmd["label"]`` (a click on the chart, in label mode)."""
        try:
            point, label = int(cmd["point"]), int(cmd["label"])
            row = int(self.view.index[point]) if self.view.index is not None else point
        except (KeyError, TypeError, ValueError, IndexError):
            return
        if row not in self.train_row:
            message = "That point is held out to measure the fit (validation); label another one."
        else:
            try:
                self.n_labels = self.trainer.set_label(self.train_row[row], label)
                message = f"Point labelled as cluster {label + 1}: {self.n_labels} labelled points now guide q."
            except ValueError as exc:
                message = str(exc)
        self.event(self.state, message=message, n_labels=self.n_labels)

    def edit_data(self, cmd: dict) -> None:
        """Train on the points of ``cmd["spec"]`` (the playground's edited points) from the next step on, keeping
        the model, its optimiser and the recording; the frames show the new points. A spec whose data cannot be
        used leaves the run as it was, and the message says why."""
        import torch

        from vmonf.starts import split_indices

        try:
            spec = JobSpec.from_json(cmd["spec"])
            if not self.spec.same_but_data(spec):
                raise ValueError("Only the data can change while a run goes on; start again for other settings.")
            data, labels = load_spec_data(spec)
            if data.x.shape[1] != self.view.points.shape[1]:
                raise ValueError("The edited points have another dimension.")
        except (KeyError, TypeError, ValueError) as exc:
            self.event(self.state, message=f"The edited points were not used: {exc}", data_refused=cmd.get("id"))
            return
        tr = self.trainer
        train_rows, val_rows = split_indices(len(data.x), tr.config.seed, spec.val_fraction)
        device = tr.x.device
        y = None if labels is None else labels[train_rows]
        tr.set_data(torch.as_tensor(data.x[train_rows], device=device),
                    None if y is None else torch.as_tensor(y, device=device),
                    torch.as_tensor(data.x[val_rows], device=device) if len(val_rows) else None)
        self.spec = spec
        self.track_rows(train_rows)
        self.view = spec_view(spec, data, labels)
        renderer = self.renderer
        if isinstance(renderer, ProcessRenderer):
            renderer.wait(NOW_WAIT)
            renderer.configure(self.view, spec.data_seed)
        elif isinstance(renderer, Renderer):
            renderer.wait()
        self.drawer.view = self.view
        self._last_full = -math.inf  # the last full frame's per-point numbers are of the old points
        self.announce(self.state, message=f"Training goes on with the edited points: {len(data.x):,} now.",
                      n_labels=self.n_labels, data_points=len(data.x), data_edit=cmd.get("id"))

    def begin(self) -> None:
        """Send what the start still owes (see :meth:`run`): the start's frame, marked ``late`` (the job records
        it first and shows it to no one), then the RUNNING event. Before any step: the frame as usual."""
        late, self._late_start = self._late_start, None
        if late is None:
            return
        model, job, info = late
        if self.trainer.step_count == 0:
            self.announce(S.RUNNING, **info)
            return
        job["meta"]["late"] = True
        # Training goes on while it is drawn: the drawing process takes no other frame before it is done.
        if self.renderer.wait(NOW_WAIT):
            self.renderer.submit(model, job)
        self.event(S.RUNNING, **info)

    def next_command(self) -> dict | None:
        """The next command: one kept from the start first; blocks while idle, only looks while training."""
        if self.pending:
            return self.pending.pop(0)
        try:
            return self.commands.get(block=self.state not in TRAINING)
        except queue.Empty:
            return None

    def run(self) -> None:
        from vmonf.train import DivergenceError

        self.stage, self.candidate = "training", {}
        info = dict(init=self.init_method, device=self.device_name, init_scores=self.init_scores,
                    init_criterion=self.init_criterion, init_skipped=self.init_skipped)
        if (self.trainer.step_count == 0 and isinstance(self.renderer, ProcessRenderer) and not self.poll_stop()
                and not self.pending):
            # The start's own frame (step 0) is drawn after the first trained one, for the recording only: on
            # the live chart one step changes nothing a user could see, and drawing it first made everyone who
            # pressed Start wait for two frames instead of one (each a ~0.1 s of CPU, seconds on a busy machine).
            self.state = S.RUNNING
            self._late_start = (copy.deepcopy(self.trainer.model), self._frame_job(), info)
        else:
            self.announce(S.RUNNING, **info)
        while True:
            cmd = self.next_command()
            if cmd is not None:
                self.begin()
                if not self.handle(cmd):
                    break
                continue
            try:
                self.trainer.step()
            except DivergenceError as exc:
                self.begin()
                self.announce(S.DIVERGED, message=str(exc))
                continue
            if self.state == S.STEPPING:
                self.step_budget -= 1
                if self.step_budget <= 0:
                    self.announce(S.PAUSED)
                    continue
            if self.finish_at and self.trainer.step_count >= self.finish_at:
                self.begin()
                self.finish_at = 0  # Resume after this trains on without a limit
                self.announce(S.FINISHED, message=f"Reached {self.spec.max_steps} steps.")
                continue
            self.stepped()
        self.begin()
        self.snapshot(now=True)
        self.checkpoint()
        self.event(S.STOPPED)


def warm_up() -> None:
    """Import and run once everything a worker uses (torch, scikit-learn's clusterings, the snapshot), on a
    tiny run, so that a process forked afterwards starts training at once (:mod:`vmonf.studio.pool`).

    Single-threaded and on the CPU: a fork server must start no thread pool and no CUDA context.
    """
    import io

    import torch

    torch.set_num_threads(1)
    import vmonf.checkpoint  # noqa: F401  (imported for the children)
    from vmonf.perf import tune_process

    tune_process()  # inherited by every fork

    spec = JobSpec(n_samples=120, n_components=2, model={"depth": 1, "hidden": 8}, grid=6, device="cpu",
                   train={"init": "auto", "init_steps": 2, "q_pretrain_steps": 2, "q_hold_steps": 1, "eval_every": 1})
    session = Session(spec, io.BytesIO())
    session.prepare(render_thread=False, keep_start=False)  # no user runs this tiny spec: nothing to keep
    for _ in range(3):
        session.trainer.step()
    session.snapshot()


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


#: Seconds a frame that must arrive before the next event (a new state, the end) may wait for the drawing
#: process; after that the worker draws it itself.
NOW_WAIT = 3.0
#: Scheduling priority of the thread or process that draws frames; by default the worker's own (NICE below).
#: The lowest (19) kept training a little faster with one run, but with four runs training at once their
#: frames starved: first frames after 30-38 s instead of 12-14 s (docs/RESULTS.md, "The live loop").
FRAME_NICE = int(os.environ.get("VMONF_FRAME_NICE", os.environ.get("VMONF_WORKER_NICE", "10")))
#: The drawing process is asked for a frame at most once per this many times its last frame's cost, so it
#: never takes much more of the machine than training does.
FRAME_SPACING = float(os.environ.get("VMONF_FRAME_SPACING", "1.5"))
#: Seconds between two full frames while a run trains; the frames in between are light (they leave out
#: vmonf.studio.capture.LIGHT_SKIPS, which the server fills in from the last full frame). A light frame of the
#: default playground run costs ~2/3 of a full one, so more frames come at the same pacing (docs/RESULTS.md,
#: "Light frames"); the live panel, which shows the per-component numbers, runs about once a second.
FULL_EVERY = float(os.environ.get("VMONF_FULL_EVERY", "0.5"))


def lower_thread_priority(nice: int = FRAME_NICE, tid: int | None = None) -> None:
    """Give thread ``tid`` (default: the calling one) priority ``nice``, never a higher one than it has. Linux
    schedules threads one by one (a nice is a thread's); elsewhere this does nothing."""
    if not (hasattr(os, "setpriority") and hasattr(threading, "get_native_id") and sys.platform.startswith("linux")):
        return
    tid = threading.get_native_id() if tid is None else tid
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError:
        pass  # not allowed here, or the thread is gone: it keeps its priority


#: A new worker (and its drawing process) runs at the server's priority until its first trained frame is drawn,
#: at most this many seconds, then at NICE: the start (data, partition, first frames) is what the person who
#: pressed Start waits for. With four runs started together beside four browser tabs, their first trained frames
#: came after 11-17 s at NICE from the start; with a fixed 4 s, a run whose start took longer drew its first
#: trained frame at NICE beside three others training (docs/RESULTS.md, "The live loop").
START_BOOST = float(os.environ.get("VMONF_START_BOOST", "8"))


def lower_priority(nice: int = NICE, tid: int | None = None) -> None:
    """Lower the CPU priority of thread ``tid`` (default: the calling one) and of this process's autogroup to
    ``nice``.

    On Linux with autogroup scheduling (the default on desktops and these machines), a plain nice only
    ranks a process against others of its own session, and each worker has its own session (``TrainingJob``
    starts it so): 8 workers
    then took 8/10 of the CPU from the browser and the server whatever their nice (a page answered a
    click in 18 s). Setting the nice of the worker's autogroup too is what makes it yield.
    """
    if not nice or not hasattr(os, "nice"):
        return
    if sys.platform.startswith("linux"):
        lower_thread_priority(nice, tid)
    else:
        os.nice(nice)
    if os.getsid(0) != os.getpid():
        return  # not in a session of its own (run by hand): its autogroup is the caller's, leave it be
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroup scheduling here: the plain nice is enough


def main() -> int:
    from vmonf.perf import tune_process

    tune_process()  # a fork server's children have it already; a plain worker switches it on here
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the message stream
    line = sys.stdin.readline()
    try:
        spec = JobSpec.from_json(line)
    except (ValueError, TypeError) as exc:
        write_message(out, EVENT, json.dumps({"state": "error", "message": str(exc)}).encode())
        return 2
    from vmonf.data import IMAGE_DATASETS

    frames = ProcessRenderer.fork() if spec.dataset not in IMAGE_DATASETS and spec.grid > 0 else None
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_read_commands, args=(sys.stdin, commands), daemon=True).start()
    tid = threading.get_native_id()
    boost = threading.Timer(START_BOOST, lower_priority, kwargs={"tid": tid})
    boost.start()
    try:
        session = Session(spec, out, commands, frame_process=frames)
        session.start_done = lambda: (boost.cancel(), lower_priority(tid=tid))
        session.prepare()
    except (ValueError, TypeError) as exc:
        write_message(out, EVENT, json.dumps({"state": "error", "message": str(exc)}).encode())
        return 2
    except BrokenPipeError:
        return 0
    try:
        session.run()
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        from vmonf.studio.pool import serve

        sys.exit(serve(int(sys.argv[2])))
    sys.exit(main())
