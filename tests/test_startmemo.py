"""A chosen start kept on disk (vmonf.startmemo): replayed bit for bit, shared, and never trusted blindly."""

import threading
import time

import numpy as np
import pytest
import torch

from vmonf.data import make_toy
from vmonf.model import ModelConfig
from vmonf.startmemo import StartMemo
from vmonf.starts import start_training
from vmonf.train import TrainConfig

MODEL = ModelConfig(3, 2, depth=2, hidden=16)
RECIPE = TrainConfig(q_pretrain_steps=30, q_hold_steps=2)


@pytest.fixture(scope="module")
def points():
    return make_toy("pinwheel", 300, seed=3)[0].astype(np.float32)


def start(x, memo, config=RECIPE, stop_after=None):
    """start_training with its events as plain values; ``stop_after``: a stop arrives after that many events."""
    events = []

    def on_event(e):
        events.append((e.stage, e.candidate, e.index, e.total, e.score, e.trainer is not None,
                       None if e.partition is None else e.partition.tolist()))
        return stop_after is not None and len(events) >= stop_after

    result = start_training(x, None, MODEL, config, device=torch.device("cpu"), memo=memo, on_event=on_event)
    return result, events


def test_a_start_replayed_from_the_memo_is_the_one_chosen_bit_for_bit(points, tmp_path):
    memo = StartMemo(tmp_path)
    plain, plain_events = start(points, None)
    first, first_events = start(points, memo)  # chooses it and keeps it
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again, again_events = start(points, memo)  # replays it
    assert plain_events == first_events == again_events  # each candidate shown again, with its cut
    assert sum(e[0] == "partition" for e in again_events) >= 3
    for other in (first, again):
        assert (other.init_method, other.candidates, other.skipped, other.criterion) == (
            plain.init_method, plain.candidates, plain.skipped, plain.criterion)
        a, b = plain.trainer.model.state_dict(), other.trainer.model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert other.trainer.q_hold_until == plain.trainer.q_hold_until
    # The same mini-batches and the same steps afterwards: the generator's state came back too.
    assert [plain.trainer.step() for _ in range(4)] == [again.trainer.step() for _ in range(4)]


def test_another_seed_or_model_is_another_start(points, tmp_path):
    memo = StartMemo(tmp_path)
    start(points, memo)
    start(points, memo, config=TrainConfig(q_pretrain_steps=30, q_hold_steps=2, seed=1))
    other, _ = start(points + 1.0, memo)  # other data
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert float(other.trainer.model.state_dict()["shift"][0]) != pytest.approx(
        float(start(points, None)[0].trainer.model.state_dict()["shift"][0]))


def test_a_start_cut_short_by_a_stop_is_not_kept(points, tmp_path):
    memo = StartMemo(tmp_path)
    result, events = start(points, memo, stop_after=1)
    assert result.trainer is not None and len(result.candidates) == 1  # the choice ended at its first candidate
    assert not list(tmp_path.glob("*.npz"))


def test_a_damaged_record_is_chosen_again(points, tmp_path):
    memo = StartMemo(tmp_path)
    plain, _ = start(points, memo)
    (record,) = tmp_path.glob("*.npz")
    record.write_bytes(b"not a record")
    again, events = start(points, memo)
    assert again.init_method == plain.init_method and events
    a, b = plain.trainer.model.state_dict(), again.trainer.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert StartMemo(tmp_path).load(record.stem) is not None  # written again, whole


def test_a_record_of_another_model_is_not_loaded_into_this_one(points, tmp_path):
    memo = StartMemo(tmp_path)
    start(points, memo)
    (record,) = tmp_path.glob("*.npz")
    kept = memo.load(record.stem)
    kept.state = {k: v for k, v in kept.state.items() if "posterior" not in k}  # a record missing weights
    memo.save(record.stem, kept)
    again, _ = start(points, memo)  # chosen again instead
    plain, _ = start(points, None)
    a, b = plain.trainer.model.state_dict(), again.trainer.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_process_waits_for_the_first_and_can_give_up(tmp_path):
    memo, order = StartMemo(tmp_path), []
    held = threading.Event()

    def first():
        with memo.hold("k") as got:
            order.append(("first", got))
            held.set()
            time.sleep(0.3)
            order.append(("first done", got))

    t = threading.Thread(target=first)
    t.start()
    held.wait(5)
    with memo.hold("k") as got:  # another open file description: flock makes it wait, as another process would
        order.append(("second", got))
    t.join()
    assert order == [("first", True), ("first done", True), ("second", True)]
    with memo.hold("k"):
        gave_up = []
        t = threading.Thread(target=lambda: gave_up.append(_try(memo)))
        t.start()
        t.join(5)
    assert gave_up == [False]


def _try(memo):
    with memo.hold("k", give_up=lambda: True) as got:
        return got


def test_the_elbo_rule_and_labelled_starts_are_not_kept(points, tmp_path):
    memo = StartMemo(tmp_path)
    start_training(points, None, MODEL, TrainConfig(start_choice="elbo", init_steps=2, q_pretrain_steps=2),
                   device=torch.device("cpu"), memo=memo)
    labels = np.full(len(points), -1)
    labels[:10] = 0
    labels[10:20] = 1
    start_training(points, labels, MODEL, RECIPE, device=torch.device("cpu"), memo=memo)
    assert not list(tmp_path.glob("*.npz"))
