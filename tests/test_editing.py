"""Points edited by hand: the point set, its undo, its link and CSV forms, and a run that trains on edited points."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from vmonf.model import ModelConfig, VMoNFModel
from vmonf.studio import editing
from vmonf.studio.editing import Editor, PointSet
from vmonf.studio.uploads import parse_points_csv
from vmonf.train import TrainConfig, Trainer


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([-2, 0], 0.3, (n, 2)), rng.normal([2, 0], 0.3, (n, 2))]).astype(np.float32)


def test_adding_erasing_and_undo():
    pts = PointSet.create(blobs(), np.repeat([0, 1], 60))
    editor = Editor(pts, ("toy",), editing.bounds_of(pts.x))
    editor.apply(pts.add([[0.0, 3.0], [0.1, 3.1]], label=1))
    assert len(editor.points) == 122 and editor.points.n_given == 2
    assert editor.points.truth[-2:].tolist() == [-1, -1]  # an added point's true cluster is not known
    left = editor.points.inside_box(-5, -0.5, -5, 5)
    assert left.sum() == 60  # the left blob, and neither added point
    editor.apply(editor.points.keep(~left))
    assert len(editor.points) == 62 and (editor.points.x[:, 0] >= 0).all()
    triangle = editor.points.inside_polygon([1, 3, 2], [-1, -1, 1])
    assert 0 < triangle.sum() < 60
    editor.clear()
    assert len(editor.points) == 0
    assert editor.undo() and len(editor.points) == 62
    assert editor.undo() and len(editor.points) == 122
    assert editor.undo() and len(editor.points) == 120 and editor.points.n_given == 0
    assert not editor.undo()


def test_polygon_test_agrees_with_a_box():
    pts = PointSet.create(np.random.default_rng(1).uniform(-3, 3, (500, 2)))
    square = pts.inside_polygon([-1, 1, 1, -1], [-1, -1, 1, 1])
    assert (square == pts.inside_box(-1, 1, -1, 1)).all() and square.any()


def test_spray_scatters_around_the_path():
    path = [[0, 0], [1, 0], [2, 0]]
    out = editing.spray(path, 0.05, per_point=4, seed=3)
    assert out.shape == (12, 2) and np.allclose(out[:3], path)
    assert np.abs(out[3:, 1]).max() < 0.3 and np.abs(out[3:, 1]).max() > 0


def test_link_round_trip_and_its_limits():
    pts = PointSet.create([[0.1234, -2.5], [1, 1]], None, [-1, 2])
    text = editing.to_query(pts)
    back = editing.from_query(text, max_label=12)
    assert np.allclose(back.x, [[0.123, -2.5], [1, 1]]) and back.given.tolist() == [-1, 2]
    assert editing.to_query(PointSet.create(np.zeros((editing.MAX_SHARED_POINTS + 1, 2)))) is None
    for bad, match in (("1,2;x,3", "point 2"), ("1,2,99", "out of range"), ("1,inf", "out of range"),
                       (";".join(["0,0"] * (editing.MAX_SHARED_POINTS + 1)), "at most")):
        with pytest.raises(ValueError, match=match):
            editing.from_query(bad, max_label=12)


def test_csv_download_reads_back_with_unknown_labels_blank():
    pts = PointSet.create(blobs(10), np.repeat([0, 1], 10)).add([[0, 3]])
    pts = pts.labelled(0, 1)  # a true 0 the user labelled 1: the given label wins
    x, y = parse_points_csv(pts.to_csv())
    assert np.allclose(x, pts.x, atol=1e-4)
    assert y[0] == 1 and y[1] == 0 and y[-1] == -1 and (y[10:20] == 1).all()


def test_a_trainer_goes_on_with_other_points():
    x = torch.as_tensor(blobs())
    model = VMoNFModel(ModelConfig(2, 2, depth=2, hidden=16))
    model.set_standardization(x.mean(0), x.std(0))
    trainer = Trainer(model, x, config=TrainConfig(consistency=0.0, eval_every=5), x_val=x[:10])
    trainer.run(10)
    adam = trainer.optimizer.state_dict()["state"]
    more = torch.cat([x, torch.tensor([[0.0, 3.0]] * 20)])
    labels = torch.full((len(more),), -1)
    labels[-20:] = 1
    trainer.set_data(more, labels)
    assert trainer.best_state is None and trainer.x_val is None
    trainer.run(5)
    assert trainer.step_count == 15 and len(trainer.optimizer.state_dict()["state"]) == len(adam)
    assert int((trainer.y >= 0).sum()) == 20
    with pytest.raises(ValueError, match="x must be"):
        trainer.set_data(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="one label per point"):
        trainer.set_data(more, labels[:5])


def test_a_running_job_trains_on_edited_points_without_a_restart():
    from vmonf.studio.job import TrainingJob
    from vmonf.studio.worker import JobSpec

    x = blobs()
    spec = JobSpec(dataset="csv", points=x.tolist(), n_components=2, train={"init": "kmeans"},
                   model={"depth": 2, "hidden": 16}, bounds=[-4, 4, -4, 4])
    job = TrainingJob(spec)
    job.start()
    try:
        assert job.wait_for(lambda j: j.latest() is not None and j.latest().step > 10, 90), job.message
        step = job.latest().step
        assert not job.edit_data(replace(spec, n_components=3))  # only the data may change
        extra = np.random.default_rng(2).normal([0, 3], 0.2, (40, 2))
        edited = replace(spec, points=x.tolist() + extra.tolist(), given_labels=[-1] * 120 + [1] * 40)
        assert job.edit_data(edited) and job.spec == edited
        assert job.wait_for(lambda j: len(j.latest().get("points")) == 160, 30), job.message
        snap = job.latest()
        assert snap.step >= step  # the same run went on: its steps did not start again
        assert snap.get("labelled")[-40:].sum() > 0 and set(snap.get("given")[snap.get("labelled")]) == {1}
        assert job.info["n_labels"] > 30  # the given labels of the training split (a tenth is held out)
        # An edit the worker cannot use (labels beyond K) is refused, and the run keeps its points.
        bad = replace(edited, given_labels=[5] * 160)
        assert job.edit_data(bad)
        assert job.wait_for(lambda j: "not used" in j.message, 30) and job.spec == edited
    finally:
        job.stop()
    assert job.state == "stopped" and len(job.recording) > 0


def test_suggestions_rank_by_q_doubt_or_by_q_p_disagreement():
    from vmonf.studio.snapshot import Snapshot

    conf = np.array([0.9, 0.55, 0.6, 0.99], np.float32)
    gap = np.array([0.1, 0.05, 0.7, 0.0], np.float32)
    snap = Snapshot.create({"stage": "training"}, {"confidence": conf, "qp_gap": gap,
                                                   "labelled": np.array([False, False, False, True])})
    assert editing.suggest_point(snap) == 1
    assert editing.suggest_point(snap, exclude=[1]) == 2
    assert editing.suggest_point(snap, rule="q and p(c|x) disagree most") == 2
    assert editing.suggest_point(snap, exclude=[0, 1, 2]) is None  # 3 is labelled already
    data_only = Snapshot.create({"stage": "data"}, {"confidence": conf})
    assert editing.suggest_point(data_only) is None  # no model yet: nothing to rank by


def test_a_frame_measures_how_far_q_is_from_p_at_each_point():
    from vmonf.studio.capture import make_view, take_snapshot

    x = blobs(30)
    model = VMoNFModel(ModelConfig(2, 2, depth=1, hidden=8))
    model.set_standardization(torch.as_tensor(x).mean(0), torch.as_tensor(x).std(0))
    snap = take_snapshot(model, make_view(x, None, grid=8), [], {"step": 0})
    pts = torch.tensor(snap.get("points"))
    with torch.no_grad():
        q, p = model.posterior_log_probs(pts).exp(), model.responsibilities(pts)
    assert np.allclose(snap.get("qp_gap"), 0.5 * (q - p).abs().sum(-1).numpy(), atol=1e-5)
    assert ((snap.get("qp_gap") >= 0) & (snap.get("qp_gap") <= 1)).all()
