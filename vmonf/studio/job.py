"""``TrainingJob``: a background thread that owns one worker process and relays its snapshots.

The UI calls ``start / pause / resume / step / stop`` and reads :meth:`TrainingJob.latest`; it never
touches the model. The relay thread never calls into the UI. They share only immutable snapshots,
a few status fields, and a lock.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import subprocess
import threading
import time
import weakref

from vmonf.studio import pool
from vmonf.studio.snapshot import Recording, Snapshot
from vmonf.studio.states import ENDED, HALTED, PROBEABLE, RunState, allowed
from vmonf.studio.worker import CHECKPOINT, EVENT, SNAPSHOT, JobSpec, read_message

#: Trainings that may run at once in this server process (each one is a worker process).
MAX_CONCURRENT_JOBS = int(os.environ.get("VMONF_MAX_JOBS", "8"))  # 8 stayed responsive on 2 cores (bench/load.py)
_slots = threading.BoundedSemaphore(MAX_CONCURRENT_JOBS)
_live: weakref.WeakSet[TrainingJob] = weakref.WeakSet()  # started and holding a slot
_watchable: weakref.WeakValueDictionary[str, TrainingJob] = weakref.WeakValueDictionary()  # by watch token
#: ARI at which a run counts as having found the clusters (the status line says when it got there).
ARI_REACHED = 0.95


def live_jobs() -> list[TrainingJob]:
    """Jobs of this process that hold a training slot (for shutdown hooks and tests)."""
    return list(_live)


def watched(token: str) -> TrainingJob | None:
    """The job whose :attr:`TrainingJob.watch_token` is ``token``, while anybody (its owner, a watcher) still
    holds it; ``None`` for an unknown token."""
    return _watchable.get(token) if isinstance(token, str) else None


def stop_all(jobs: list[TrainingJob] | None = None, timeout: float = 5.0) -> None:
    """Stop several jobs in parallel: all are asked at once, then each gets what is left of ``timeout``."""
    jobs = live_jobs() if jobs is None else jobs
    for job in jobs:
        job.request_stop()
    end = time.monotonic() + timeout
    for job in jobs:
        job.stop(timeout=max(0.5, end - time.monotonic()))


@atexit.register
def _stop_workers_at_exit() -> None:
    """When the server exits (SIGTERM included), its training workers stop too, within a few seconds."""
    stop_all(timeout=3.0)
    pool.shutdown()


class BusyError(RuntimeError):
    """Every training slot is taken."""


class TrainingJob:
    """One training run in a worker process, relayed by a daemon thread.

    ``start()`` is idempotent; ``stop()`` keeps the final snapshot, the recording and the checkpoint.
    """

    def __init__(self, spec: JobSpec, *, max_frames: int = 200):
        self.spec = spec
        self.recording = Recording(max_frames)
        self._state = RunState.CREATED
        self.invalid_transitions: list[tuple[str, str]] = []  # moves TRANSITIONS does not allow (tests: none)
        self.message = ""
        self.checkpoint: bytes | None = None
        self.info: dict = {}
        self._latest: Snapshot | None = None
        self._full: Snapshot | None = None  # the last full frame: light ones are filled in from it
        self._full_frames = False  # whether the worker was asked to draw every frame full (full_frames)
        self.snapshot_interval = 0.0  # seconds between arriving snapshots (moving average; 0 = none yet)
        self._last_arrival = 0.0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._has_slot = False
        self._stop_requested = False
        self._queued: list[dict] = []  # commands given before the worker existed, sent when it does
        self._stderr: list[str] = []
        self._started_at = 0.0
        #: Seconds from start() to each moment of the start: "worker" (the worker's first message), "data",
        #: "partition", "chosen" (initialisation kept), "first_trained" (the kept model's first frame after a
        #: training step), "ari" (first frame of the kept model with ARI >= ARI_REACHED).
        self.timeline: dict[str, float] = {}
        self.ari_reached: tuple[float, int] | None = None  # (seconds since start, step)
        self._candidates: dict[str, list[tuple[float, Snapshot]]] = {}  # frames of each candidate start
        self._listeners: list = []  # called with every frame, in the relay thread (see subscribe)
        #: The latest answer to each question the run was asked (:meth:`probe`, :meth:`flow_stages`), by name.
        self.answers: dict[str, dict] = {}
        self._asked = 0
        self._ended_model = None  # the checkpoint's model, loaded once when a question comes after the end
        self._spec_before: dict[int, JobSpec] = {}  # edit id -> the spec before it, until the worker answers
        #: The run's watch link names it by this random token (:func:`watched`); watching reads, never trains.
        self.watch_token = secrets.token_urlsafe(12)
        _watchable[self.watch_token] = self
        self.owner_left = False  # set when the owner's session ended the run (watchers are told so)
        self.extras: dict = {}  # what a UI keeps per run, e.g. the watchers' shared feeds (never read here)

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Take a training slot and start the relay thread, which gets a worker and relays it; returns at once
        (a worker from a fork server still warming up can take seconds). Does nothing if already started."""
        with self._lock:
            if self._thread is not None:
                return
            if not _slots.acquire(blocking=False):
                raise BusyError(f"All {MAX_CONCURRENT_JOBS} training slots on this server are busy. "
                                "Try again in a moment, when another run has stopped.")
            self._has_slot = True
            _live.add(self)
            self.state = RunState.STARTING
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="vmonf-training", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        proc = None
        try:
            proc = pool.spawn(self.spec.threads)
            proc.stdin.write((self.spec.to_json() + "\n").encode())
            proc.stdin.flush()
        except OSError as exc:  # no process (out of memory, too many open files), or it died at once
            self.state, self.message = RunState.ERROR, f"Could not start the training process: {exc}"
            if proc is not None:
                proc.kill()
                proc.wait()
            self._release()  # a failed start must never hold a slot for good
            return
        with self._lock:
            self._proc = proc
            queued, self._queued = self._queued, []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        for cmd in queued:
            self._send(cmd)
        if self._stop_requested:  # Stop was pressed while the worker was being started
            self._send({"cmd": "stop"})
        self._relay()

    def _send(self, cmd: dict) -> None:
        with self._lock:
            proc = self._proc
            if proc is None and self.state == RunState.STARTING:  # the worker is on its way: sent when it is there
                self._queued.append(cmd)
                return
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def pause(self) -> None:
        self._send({"cmd": "pause"})

    def resume(self) -> None:
        if self.alive and self.state in HALTED:
            self.state = RunState.RUNNING  # optimistic, so a UI redrawn right away keeps watching; the worker confirms
        self._send({"cmd": "resume"})

    def step(self, n: int = 50) -> None:
        if self.alive and self.state in HALTED:
            self.state = RunState.STEPPING
        self._send({"cmd": "step", "n": int(n)})

    def probe(self, x: float, y: float, wait: float = 0.0) -> None:
        """Ask for the model's numbers at the point ``(x, y)``; they arrive in :attr:`probe_result`, which this
        waits up to ``wait`` seconds for.

        A live worker answers between two training steps (one forward pass of one point). After the run has
        ended, its checkpoint answers here, in this process."""
        from vmonf.studio.worker import probe_numbers

        def local(model):
            step = self._latest.step if self._latest else 0
            from vmonf.train import temperature_at

            ended_at = temperature_at(float(self.spec.train.get("temperature_decay", 0.0)), step)
            answer = probe_numbers(model, [x, y], ended_at)
            return None if answer is None else {**answer, "step": step}

        self._ask("probe", {"x": [float(x), float(y)]}, local, wait)

    def flow_stages(self, component: int, wait: float = 0.0) -> None:
        """Ask for one component's flow layer by layer (:func:`vmonf.studio.capture.flow_stages`, on the run's
        view points); the answer arrives in :attr:`stages_result`, like :meth:`probe`'s."""
        from vmonf.studio.capture import flow_stages

        def local(model):
            if self._latest is None or self._latest.get("points") is None:
                return None
            return {**flow_stages(model, int(component), self._latest.get("points"), seed=self.spec.data_seed),
                    "step": self._latest.step}

        self._ask("stages", {"component": int(component)}, local, wait)

    def _ask(self, name: str, args: dict, local, wait: float) -> None:
        """Send the question ``name`` to a live worker and wait up to ``wait`` s for its answer; after the end,
        answer it here with ``local(model)`` on the checkpoint's model (loaded once)."""
        self._asked += 1
        asked = self._asked
        if self.alive and self.state in PROBEABLE:
            self._send({"cmd": name, **args, "id": asked})
            end = time.monotonic() + wait
            while time.monotonic() < end and (self.answers.get(name) or {}).get("id") != asked and self.alive:
                time.sleep(0.005)
        elif self.state in ENDED and self.checkpoint is not None:
            if self._ended_model is None:
                from vmonf.checkpoint import load_checkpoint

                self._ended_model = load_checkpoint(self.checkpoint)[0]
            try:
                answer = local(self._ended_model)
            except ValueError:
                answer = None
            if answer is not None:
                self.answers[name] = {**answer, "id": asked}

    @property
    def probe_result(self) -> dict | None:
        """The latest point-probe answer (:meth:`probe`): x, q, p, log_joint, log_p, elbo, gap, step, id."""
        return self.answers.get("probe")

    @property
    def stages_result(self) -> dict | None:
        """The latest flow-stages answer (:meth:`flow_stages`): component, names, stages, step, id."""
        return self.answers.get("stages")

    def label(self, point: int, label: int) -> None:
        """Give the view's point ``point`` (an index into the frames' points) the label ``label`` (0-based);
        the worker says what it did (``message``, and ``info["n_labels"]``)."""
        self._send({"cmd": "label", "point": int(point), "label": int(label)})

    def edit_data(self, spec: JobSpec) -> bool:
        """Go on training on ``spec``'s points (edited on the chart), keeping the model and the recording; only the
        data fields may differ from the run's spec (:meth:`JobSpec.same_but_data`). Returns ``False`` (nothing
        sent) otherwise, or when the run has ended. The run's spec is the edited one from now on (its run file
        and checkpoint keep the edited points); if the worker cannot use them it says why and keeps the old."""
        if not (self.alive and self.spec.same_but_data(spec)) or spec == self.spec:
            return False
        self._asked += 1
        self._spec_before[self._asked] = self.spec
        self.spec = spec
        self._send({"cmd": "data", "spec": spec.to_json(), "id": self._asked})
        return True

    def full_frames(self, on: bool) -> None:
        """Ask the worker to draw every frame full (``on``: a view shows what light frames leave out, the warp
        lines) or, by default, most of them light (:data:`~vmonf.studio.snapshot.LIGHT_SKIPS`); sent only when
        it changes."""
        on = bool(on)
        if on != self._full_frames and self.alive:
            self._full_frames = on
            self._send({"cmd": "frames", "full": on})

    def remove_component(self, component: int) -> None:
        """Take component ``component`` (0-based) out of the mixture; the worker says what it did."""
        self._send({"cmd": "remove", "component": int(component)})

    def request_stop(self) -> None:
        """Ask the worker to finish (it sends its checkpoint, then exits); returns at once."""
        if self.alive:
            self.state = RunState.STOPPING
        self._stop_requested = True
        self._send({"cmd": "stop"})

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to finish, wait for its checkpoint, then make sure it has exited."""
        if self._thread is None:
            return
        self.request_stop()
        end = time.monotonic() + timeout
        while self._proc is None and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.02)  # the worker is still being started
        proc = self._proc
        if proc is None:
            self._thread.join(max(0.0, end - time.monotonic()))
            self._release()
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if self._thread is not None:
            self._thread.join(timeout)
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._has_slot:
            self._has_slot = False
            _live.discard(self)
            _slots.release()

    # -- status -----------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    @state.setter
    def state(self, new: str) -> None:
        new = RunState(new)
        if not allowed(self._state, new):
            self.invalid_transitions.append((self._state.value, new.value))
        self._state = new

    @property
    def alive(self) -> bool:
        """Started and not ended: its worker is being started, or runs."""
        thread, proc = self._thread, self._proc
        return thread is not None and thread.is_alive() and (proc is None or proc.poll() is None)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._latest

    def subscribe(self, listener) -> None:
        """Call ``listener(snapshot)`` with every frame that arrives, in the relay thread: it must be quick, and
        must not touch the UI framework. An exception in it is printed and ignored."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def unsubscribe(self, listener) -> None:
        with self._lock:
            self._listeners = [f for f in self._listeners if f is not listener]

    def wait_for(self, predicate, timeout: float = 30.0, poll: float = 0.05) -> bool:
        """Wait until ``predicate(self)`` holds (for scripts and tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self):
                return True
            time.sleep(poll)
        return predicate(self)

    # -- relay thread -----------------------------------------------------------------------------
    def _relay(self) -> None:
        stream = self._proc.stdout
        try:
            while (msg := read_message(stream)) is not None:
                kind, payload = msg
                self._mark("worker")
                if kind == SNAPSHOT:
                    self._receive(Snapshot.from_wire(payload))
                elif kind == EVENT:
                    event = json.loads(payload)
                    if answer := next((name for name in ("probe", "stages") if name in event), None):
                        self.answers[answer] = event[answer]  # an answer to a question, not a change of state
                        continue
                    self.state = RunState(event.pop("state"))
                    if "message" in event:
                        self.message = event.pop("message")
                    self._edit_answered(event.pop("data_edit", None), event.pop("data_refused", None))
                    self.info.update(event)
                elif kind == CHECKPOINT:
                    self.checkpoint = payload
        finally:
            code = self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):  # stderr: closed by _drain_stderr
                try:
                    pipe.close()
                except OSError:
                    pass  # a stdin write was cut off by the exit; the pipe is closed anyway
            if self.state not in ENDED:
                if code == 0 and self.checkpoint is not None:
                    self.state = RunState.STOPPED
                else:
                    self.state = RunState.ERROR
                    tail = "".join(self._stderr[-5:]).strip()
                    self.message = self.message or f"The training process ended unexpectedly (exit {code}). {tail}"
            self._release()

    def _edit_answered(self, used: int | None, refused: int | None) -> None:
        """The worker used (or refused) an :meth:`edit_data`; a refused edit gives the run its spec back."""
        if refused is not None and refused in self._spec_before and refused == max(self._spec_before):
            self.spec = self._spec_before[refused]  # (a later edit, still on its way, replaces it anyway)
        for done in (used, refused):
            if done is not None:
                for key in [k for k in self._spec_before if k <= done]:
                    del self._spec_before[key]

    def _mark(self, moment: str) -> float:
        now = time.monotonic() - self._started_at
        self.timeline.setdefault(moment, round(now, 3))
        return now

    def _receive(self, snap: Snapshot) -> None:
        """A frame arrived: show it; record it, or keep it aside while it shows a candidate initialisation. A
        light frame is filled in from the last full one first, so every viewer and the recording see whole
        frames (``meta["heavy_step"]`` says which step the filled-in arrays show)."""
        if snap.meta.get("light"):
            if self._full is not None:
                snap = snap.filled_from(self._full)
        elif not snap.meta.get("late") and snap.meta.get("stage", "training") == "training":
            self._full = snap  # (a candidate start's frames are of another model)
        if snap.meta.get("late"):  # the start's own frame, drawn after the first trained one: recorded, not shown
            self.recording.insert(snap)
            return
        now = time.monotonic()
        stage = snap.meta.get("stage", "training")
        if self._last_arrival and snap.meta.get("state") == "running":
            gap = now - self._last_arrival
            self.snapshot_interval = gap if not self.snapshot_interval else 0.7 * self.snapshot_interval + 0.3 * gap
        self._last_arrival = now
        # The frame's moments are marked before its viewers draw it, so its own figure carries them (the
        # timeline in a chart's meta, which bench/live_ui.py reads).
        seconds = self._mark(stage if stage in ("data", "partition") else "frame")
        if stage == "training":
            self._mark("chosen")  # the first frame after the choice names the kept initialisation
            if snap.step > 0:  # (a candidate's trained frames, under the ELBO rule, are not the run's)
                self._mark("first_trained")
        with self._lock:
            self._latest = snap
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # noqa: BLE001 - a failing viewer must never stop the run
                import traceback

                traceback.print_exc()
        if stage == "candidate":
            frames = self._candidates.setdefault(snap.meta.get("candidate", ""), [])
            frames.append((seconds, snap))
            del frames[: -self.recording.max_frames]
        elif stage == "training":
            if self._candidates:
                self._keep_candidate(snap.meta.get("init", ""))
            self._record(seconds, snap)

    def _keep_candidate(self, name: str) -> None:
        """The worker kept initialisation ``name``: its frames open the recording, the others are dropped."""
        for seconds, snap in self._candidates.pop(name, []):
            self._record(seconds, snap)
        self._candidates.clear()

    def _record(self, seconds: float, snap: Snapshot) -> None:
        self.recording.append(snap)
        if self.ari_reached is None and snap.meta.get("ari", -1.0) >= ARI_REACHED:
            self.ari_reached = (round(seconds, 2), snap.step)
            self.timeline.setdefault("ari", round(seconds, 3))

    def _drain_stderr(self) -> None:
        with self._proc.stderr as stream:  # closed at the worker's exit: no pipe outlives its run (bench/soak.py)
            for line in stream:
                self._stderr.append(line.decode(errors="replace"))
                del self._stderr[:-50]
