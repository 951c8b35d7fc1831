"""The background job and its worker process, snapshots and the bounded recording."""

from pathlib import Path

import numpy as np
import pytest

from vmonf.studio import job as jobmod
from vmonf.studio import pool
from vmonf.studio.job import BusyError, TrainingJob
from vmonf.studio.snapshot import Recording, Snapshot
from vmonf.studio.worker import JobSpec

SMALL = dict(n_samples=300, n_components=3, model={"depth": 2, "hidden": 16}, grid=20,
             train={"init": "kmeans", "q_pretrain_steps": 20, "q_hold_steps": 20})


def started(**kw) -> TrainingJob:
    job = TrainingJob(JobSpec(**{**SMALL, **kw}))
    job.start()
    return job


def test_start_is_idempotent_pause_step_stop_keep_everything():
    job = started()
    try:
        thread = job.thread
        job.start()
        assert job.thread is thread  # a second start never makes a second worker
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step >= 30, 60)
        job.pause()
        assert job.wait_for(lambda j: j.state == "paused", 10)
        a = job.latest().step
        assert not job.wait_for(lambda j: j.latest().step != a, 0.7)
        job.step(7)
        assert job.wait_for(lambda j: j.state == "paused" and j.latest().step == a + 7, 10)
    finally:
        job.stop()
    assert job.state == "stopped" and not job.alive and not job.thread.is_alive()
    assert job.invalid_transitions == []  # start, run, pause, step, stop: every move one the state table allows
    assert job.checkpoint and len(job.recording) >= 2
    from vmonf.checkpoint import load_checkpoint

    model, extra = load_checkpoint(job.checkpoint)
    assert extra["step"] == job.latest().step and model.config.n_components == 3


def test_light_frames_are_filled_in_and_a_view_can_ask_for_full_ones():
    from vmonf.studio.snapshot import LIGHT_SKIPS

    job = started()
    seen: list[Snapshot] = []
    job.subscribe(seen.append)
    try:
        assert job.wait_for(lambda j: any("heavy_step" in s.meta for s in seen), 60)  # light ones come
        job.full_frames(True)  # the warp view
        n = len(seen)
        assert job.wait_for(lambda j: len(seen) > n + 12, 60)
        assert not any("heavy_step" in s.meta for s in seen[n + 3:])  # after the one or two already asked for
    finally:
        job.stop()
    trained = [s for s in [*seen, *job.recording.snapshot_list()] if s.meta.get("stage") == "training"]
    assert trained
    for snap in trained:  # every frame of the model a viewer or the recording gets is whole
        assert all(snap.get(name) is not None for name in LIGHT_SKIPS), snap.meta
        assert snap.meta.get("heavy_step", snap.step) <= snap.step


def test_divergence_is_reported_not_crashed():
    job = started(train={**SMALL["train"], "lr": 1e6}, model={"depth": 2, "hidden": 16})
    try:
        assert job.wait_for(lambda j: j.state == "diverged", 60), (job.state, job.message)
        assert "learning rate" in job.message and job.alive
    finally:
        job.stop()
    assert job.checkpoint  # the last finite state is kept


def test_bad_spec_gives_a_clear_error():
    job = started(n_components=500, n_samples=100)
    try:
        assert job.wait_for(lambda j: j.state == "error", 60)
        assert "more than the" in job.message
    finally:
        job.stop()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_says_so():
    job = started(device="cuda")
    try:
        assert job.wait_for(lambda j: j.state == "error", 60)
        assert "no CUDA GPU is available" in job.message and "Traceback" not in job.message
    finally:
        job.stop()


def test_concurrency_cap(monkeypatch):
    import threading

    monkeypatch.setattr(jobmod, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(jobmod, "MAX_CONCURRENT_JOBS", 1)
    first = started()
    try:
        with pytest.raises(BusyError, match="busy"):
            started()
    finally:
        first.stop()
    second = started()  # the slot came back
    second.stop()


def test_a_failed_start_says_why_and_gives_its_slot_back(monkeypatch):
    import threading

    monkeypatch.setattr(jobmod, "_slots", threading.BoundedSemaphore(1))

    def no_process(*args, **kwargs):
        raise OSError(24, "Too many open files")

    with monkeypatch.context() as m:
        m.setattr(jobmod.pool, "spawn", no_process)
        job = started()
        assert job.wait_for(lambda j: j.state == "error", 10)
    assert "Too many open files" in job.message and job.wait_for(lambda j: not j.alive, 5)
    assert not jobmod.live_jobs()
    second = started()  # the only slot is free again
    assert second.wait_for(lambda j: j.latest() is not None)
    second.stop()


def snap(step: int) -> Snapshot:
    return Snapshot.create({"step": step}, {"a": np.arange(3.0) * step})


def test_recording_is_bounded_ordered_and_spread():
    rec = Recording(max_frames=10)
    for i in range(1000):
        rec.append(snap(i))
    frames = rec.snapshot_list()
    steps = [f.step for f in frames]
    assert len(frames) <= 10 and steps == sorted(steps) and steps[0] == 0 and steps[-1] >= 500


def test_a_late_frame_goes_in_step_order():
    rec = Recording(max_frames=4)
    for i in (1, 2, 3):
        rec.append(snap(i))
    rec.insert(snap(0))
    assert [f.step for f in rec.snapshot_list()] == [0, 1, 2, 3]
    rec.insert(snap(5))
    assert [f.step for f in rec.snapshot_list()] == [0, 2, 5]  # still bounded: every second frame kept


def test_snapshot_round_trip_and_immutable():
    s = Snapshot.create({"step": 4, "x": 1.5}, {"z": np.ones((2, 3), np.float32)})
    t = Snapshot.from_bytes(s.to_bytes())
    assert t.meta == s.meta and np.array_equal(t.get("z"), s.get("z"))
    with pytest.raises(ValueError):
        t.get("z")[0, 0] = 3


def test_the_wire_round_trips_every_array_read_only_and_refuses_what_it_did_not_write():
    from vmonf.studio.snapshot import pack, unpack

    arrays = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([3, -1], np.int16),
              "empty": np.zeros((0, 2), np.float64), "scalar": np.array(2.5), "t": np.arange(4).reshape(2, 2).T,
              "b": np.array([True, False])}
    s = Snapshot.create({"step": 7, "loss": float("nan")}, arrays)
    t = Snapshot.from_wire(s.to_wire())
    assert t.step == 7 and np.isnan(t.meta["loss"]) and set(t.arrays) == set(arrays)
    for name, a in arrays.items():
        assert t.get(name).dtype == a.dtype and np.array_equal(t.get(name), a), name
        with pytest.raises(ValueError):
            t.get(name)[...] = 0
    for bad in (b"", s.to_bytes(), s.to_wire()[:-3], b"VMW1\xff\xff\xff\x7f{}"):
        with pytest.raises(ValueError):
            unpack(bad)
    with pytest.raises(TypeError):
        pack({}, {"o": np.array([None, 1], dtype=object)})
    import json
    import struct

    head = json.dumps({"meta": {}, "arrays": [["o", "|O", [1], 0]]}).encode()
    with pytest.raises(ValueError):  # an object array is never read back (it would need pickle)
        unpack(b"VMW1" + struct.pack("<I", len(head)) + head + bytes(8))


def test_snapshot_elbo_decomposition_adds_up():
    job = started()
    try:
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step >= 30, 60)
        m = job.latest().meta
    finally:
        job.stop()
    parts = m["val_expected_loglik"] + m["val_expected_logprior"] + m["val_entropy"]
    assert parts == pytest.approx(m["val_elbo"], abs=1e-4)
    assert m["val_loglik"] >= m["val_elbo"] - 1e-4  # the gap is a KL divergence, never negative


def test_worker_curves_stay_bounded():
    from vmonf.studio.worker import MAX_HISTORY, append_bounded

    history: list[dict] = []
    for step in range(1, 5001):
        history = append_bounded(history, {"step": step}, MAX_HISTORY)
    steps = [r["step"] for r in history]
    assert len(steps) <= MAX_HISTORY and steps[0] == 1 and steps[-1] == 5000 and steps == sorted(steps)


def test_trainer_history_stays_bounded(monkeypatch):
    import torch

    from vmonf import train
    from vmonf.model import ModelConfig, VMoNFModel

    monkeypatch.setattr(train, "MAX_HISTORY", 8)
    x = torch.randn(200, 2)
    trainer = train.Trainer(VMoNFModel(ModelConfig(2, 2, depth=1, hidden=8)), x, config=train.TrainConfig(eval_every=1),
                            x_val=x[:50])
    trainer.run(40)
    steps = [row["step"] for row in trainer.history]
    assert len(steps) <= 9 and steps[0] == 1 and steps[-1] == 40 and steps == sorted(steps)


def test_the_cut_choice_shows_each_partition_and_trains_only_the_kept_start():
    """With the default choice (normalised cut) each candidate partition is sent with its cut, no candidate
    trains, and the recording opens with the kept start at step 0."""
    job = TrainingJob(JobSpec(**{**SMALL, "train": {"init": "auto", "q_pretrain_steps": 20, "q_hold_steps": 20}}))
    seen = []
    job.subscribe(lambda snap: seen.append(dict(snap.meta)))
    job.start()
    try:
        # The RUNNING event, which names the start, comes just after the first trained frame (Session.begin).
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step >= 5 and "init" in j.info, 90)
        assert job.info["init_criterion"] == "cut"
        scores = job.info["init_scores"]
        kept = job.info["init"]
        assert kept in scores and scores[kept] == min(scores.values()) and len(scores) >= 2
        cuts = [m for m in seen if m.get("stage") == "partition" and "cut" in m]
        assert {m["candidate"] for m in cuts} == set(scores)
        assert not any(m.get("stage") == "candidate" for m in seen)  # nothing trained before the choice
        assert job.timeline["data"] <= job.timeline["partition"] <= job.timeline["chosen"]
        frames = job.recording.snapshot_list()
        assert frames[0].step == 0 and frames[0].meta.get("init") == kept
        # Training waits for its first trained frame (the one a user waits for after Start): it shows step 1.
        trained = [m["step"] for m in seen if m.get("stage") == "training" and m.get("step", 0) > 0]
        assert trained[0] == 1, trained[:5]
        # The start's own frame (step 0) is drawn after it, recorded first and shown to no viewer; the curves of
        # later frames take its row in step order.
        assert not [m for m in seen if m.get("stage") == "training" and m.get("step") == 0]
        steps = job.latest().get("hist_step")
        assert steps[0] == 0 and (np.diff(steps) > 0).all(), steps
    finally:
        job.stop()
    # The same run started again replays the start its server kept (vmonf.startmemo): the same start and cuts,
    # and the record is read, not made again. Of the candidates, only the kept one's frame is sent.
    memo = Path(pool.start_memo_folder())
    records = {p: p.stat().st_mtime_ns for p in memo.glob("*.npz")}
    assert records, "the chosen start was not kept"
    again, shown = TrainingJob(job.spec), []
    again.subscribe(lambda snap: shown.append(dict(snap.meta)))
    again.start()
    try:
        assert again.wait_for(lambda j: j.latest() is not None and j.latest().step >= 1 and "init" in j.info, 90)
        assert again.info["init"] == kept and again.info["init_scores"] == scores
        assert not [m for m in shown if "cut" in m]
        assert [m["stage"] for m in shown][:3] == ["data", "partition", "training"]
    finally:
        again.stop()
    assert {p: p.stat().st_mtime_ns for p in memo.glob("*.npz")} == records


def test_the_start_is_shown_and_stop_while_choosing_keeps_a_model():
    """With the ELBO choice the worker sends the data, each candidate initialisation's partition and training
    frames, and keeps only the kept candidate's frames for the recording; Stop while it chooses still ends
    with a checkpoint."""
    spec = {**SMALL, "train": {"init": "auto", "start_choice": "elbo", "init_steps": 30, "q_pretrain_steps": 20,
                               "q_hold_steps": 20}}
    job = started(**spec)
    try:
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().meta.get("stage") == "training"
                            and j.latest().step > 0 and "init" in j.info, 90)
        assert {"worker", "data", "partition", "first_trained", "chosen"} <= set(job.timeline)
        # The candidates trained before the choice; the run's first trained frame is the kept model's, after it.
        assert job.timeline["data"] <= job.timeline["partition"] <= job.timeline["chosen"] <= job.timeline[
            "first_trained"]
        kept = job.info["init"]
        assert kept in job.info["init_scores"] or kept in job.info["init_skipped"].values()
        frames = job.recording.snapshot_list()
        assert frames[0].step == 0 and frames[0].meta.get("candidate") == kept  # the kept start from its step 0
        assert all(f.meta.get("candidate") in (kept, None) for f in frames)
        assert [f.step for f in frames] == sorted(f.step for f in frames)
    finally:
        job.stop()
    early = started(**{**spec, "train": {**spec["train"], "init_steps": 100_000}})  # a choice that never ends
    try:
        assert early.wait_for(lambda j: j.latest() is not None and j.latest().meta.get("stage") == "candidate", 60)
    finally:
        early.stop(timeout=30)
    assert early.state == "stopped" and early.checkpoint, (early.state, early.message)


def test_probe_answers_with_the_models_own_numbers_while_running_and_after_stop():
    import torch

    from vmonf.checkpoint import load_checkpoint

    job = started()
    try:
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step >= 20, 60)
        job.probe(0.3, -0.2)
        assert job.wait_for(lambda j: j.probe_result is not None, 10)
        live = job.probe_result
        assert len(live["q"]) == 3 and abs(sum(live["p"]) - 1) < 1e-5 and live["gap"] >= -1e-5
        assert live["x"] == [0.3, -0.2] and live["step"] >= 20
    finally:
        job.stop()
    job.probe(0.3, -0.2)  # ended: the checkpoint answers, in this process
    after = job.probe_result
    model = load_checkpoint(job.checkpoint)[0]
    x = torch.tensor([[0.3, -0.2]])
    with torch.no_grad():
        assert abs(after["log_p"] - float(model.log_prob(x))) < 1e-4
        np.testing.assert_allclose(after["p"], model.responsibilities(x)[0].numpy(), atol=1e-5)
    assert after["elbo"] <= after["log_p"] + 1e-5


def test_a_label_given_while_training_reaches_the_trainer():
    job = started()
    try:
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step >= 10, 60)
        answers = {}
        for point in range(8):  # a few of the view's points; held-out ones are refused with a reason
            job.message = ""
            job.label(point, 1)
            assert job.wait_for(lambda j: j.message, 10)
            answers[point] = (job.message, job.info.get("n_labels"))
        taken = [p for p, (m, _) in answers.items() if "labelled as cluster 2" in m]
        refused = [p for p, (m, _) in answers.items() if "held out" in m]
        assert taken and len(taken) + len(refused) == 8
        assert [answers[p][1] for p in taken] == list(range(1, len(taken) + 1))  # each one counted once
        job.message = ""
        job.label(taken[0], 99)  # not a component
        assert job.wait_for(lambda j: "label must be a component" in j.message, 10)
        assert job.alive and job.state == "running"
    finally:
        job.stop()


def test_pause_pressed_before_the_worker_exists_pauses_the_run_as_it_begins(monkeypatch):
    """Pause is enabled from Start on (the buttons then stay as they are when training begins): a pause sent
    while the worker is still being started is kept and sent when it is there."""
    import time

    real = jobmod.pool.spawn

    def slow_spawn(*args, **kw):
        time.sleep(0.5)  # a fork server still warming up
        return real(*args, **kw)

    monkeypatch.setattr(jobmod.pool, "spawn", slow_spawn)
    job = TrainingJob(JobSpec(**SMALL))
    job.start()
    try:
        job.pause()
        assert job.state == "starting" and job._queued == [{"cmd": "pause"}]  # no worker yet: kept
        assert job.wait_for(lambda j: j.state == "paused", 60), (job.state, job.message)
        assert job.latest().step == 0 and "first_trained" not in job.timeline  # paused before its first step
        assert not job.wait_for(lambda j: j.latest().step != 0, 0.7)
        assert {"worker", "chosen"} <= set(job.timeline)
    finally:
        job.stop()
    assert job.invalid_transitions == []
