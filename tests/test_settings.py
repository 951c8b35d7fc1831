"""One settings schema: its entries agree with the widgets, the share link, the presets, the JobSpec and the CLI."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vmonf.__main__ import build_parser
from vmonf.model import ModelConfig
from vmonf.studio.presets import PRESETS
from vmonf.studio.settings import DEFAULTS, SETTINGS, TOY_PARAMS, from_query, to_query, to_spec, true_k
from vmonf.studio.worker import JobSpec
from vmonf.train import TrainConfig

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ALL = [*SETTINGS.values(), *(p for ps in TOY_PARAMS.values() for p in ps)]


@pytest.mark.parametrize("setting", ALL, ids=lambda s: s.query)
def test_every_default_is_allowed_and_every_setting_has_help(setting):
    assert setting.allows(setting.default) and setting.help and setting.label
    assert isinstance(setting.default, setting.kind)
    assert setting.widget in ("slider", "select_slider", "selectbox", "number")
    assert bool(setting.choices) == (setting.widget in ("select_slider", "selectbox"))


def test_query_keys_are_unique():
    names = [s.query for s in SETTINGS.values()]
    assert len(set(names)) == len(names) and "ds" not in names


def random_settings(rng, dataset):
    out = {"dataset": dataset, "params": {}}
    for s in [*SETTINGS.values(), *TOY_PARAMS.get(dataset, [])]:
        if s.choices:
            value = s.choices[rng.integers(len(s.choices))]
        elif s.kind is int:
            value = int(rng.integers(s.low, s.high + 1))
        else:
            value = round(float(rng.uniform(s.low, s.high)), 2)
        (out["params"] if s.query.startswith("p_") else out)[s.key] = value
    return out


@pytest.mark.parametrize("dataset", list(TOY_PARAMS))
def test_share_link_round_trips_any_allowed_settings(dataset):
    rng = np.random.default_rng(len(dataset))
    for _ in range(20):
        settings = random_settings(rng, dataset)
        back, problems = from_query(to_query(settings))
        assert problems == []
        assert {**DEFAULTS, **back} == {**DEFAULTS, **settings}


def test_bad_link_values_are_named_not_taken():
    settings, problems = from_query({"ds": "moons", "k": "99", "depth": "x", "lr": "0.5", "p_wings": "3",
                                     "p_noise": "0.1"})
    assert settings == {"dataset": "moons", "params": {"noise": 0.1}}
    assert len(problems) == 4 and any("k='99'" in p for p in problems) and any("p_wings" in p for p in problems)
    assert from_query({"ds": "nowhere"})[1] == ["unknown data set 'nowhere'"]


def test_presets_use_only_known_settings():
    for preset in PRESETS.values():
        assert set(preset.settings) <= set(DEFAULTS), preset.title
        settings = {**DEFAULTS, **preset.settings}
        assert all(SETTINGS[k].allows(settings[k]) for k in SETTINGS), preset.title
        ranges = {p.key: p for p in TOY_PARAMS[settings["dataset"]]}
        assert all(ranges[k].allows(v) for k, v in settings["params"].items()), preset.title


def test_every_setting_reaches_the_job_spec():
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    spec_fields = {f.name for f in dataclasses.fields(JobSpec)}
    rng = np.random.default_rng(0)
    settings = random_settings(rng, "pinwheel")
    spec = to_spec(settings, device="cpu", model={"share_weights": True}, train={"prune_below": 0.05})
    for s in SETTINGS.values():
        where, _, name = s.target.partition(".")
        if name:
            assert name in (model_fields if where == "model" else train_fields), s.target
            assert getattr(spec, where)[name] == settings[s.key]
        else:
            assert where in spec_fields and getattr(spec, where) == settings[s.key], s.target
    assert spec.model["share_weights"] and spec.train["prune_below"] == 0.05 and spec.toy_params == settings["params"]
    assert JobSpec.from_json(spec.to_json()) == spec


def test_cli_flags_follow_the_schema():
    actions = {a.option_strings[0]: a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
               if a.option_strings}
    for s in SETTINGS.values():
        if s.cli is None:
            continue
        action = actions[s.cli]
        assert action.default == (s.default if s.cli_default is None else s.cli_default)
        assert action.type is s.kind
    args = build_parser().parse_args(["train", "--out", "x", "--hidden", "256", "--batch-size", "100"])
    assert args.hidden == 256 and args.batch_size == 100  # numbers beyond the sliders are the CLI's to take
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--init", "nonsense"])


def test_true_k_follows_the_data_set_parameter():
    assert true_k("pinwheel", {"wings": 3}) == 3 and true_k("pinwheel", {}) == 5 and true_k("moons", {}) == 2


def test_playground_widgets_follow_the_schema():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    for s in SETTINGS.values():
        key = f"toy_k_{DEFAULTS['dataset']}" if s.key == "k" else f"toy_{s.key}"
        widget = at.sidebar.get({"slider": "slider", "select_slider": "select_slider", "selectbox": "selectbox",
                                 "number": "number_input"}[s.widget])
        widget = next(w for w in widget if w.key == key)
        assert widget.label == s.label and widget.help == s.help
        if s.widget in ("slider", "number"):
            assert (widget.min, widget.max) == (s.low, s.high) or s.key == "k"
        else:
            assert list(widget.options) == [s.text(c) for c in s.choices]
        if s.key != "k":  # K starts at the data set's number of clusters
            assert widget.value == s.default
    for p in TOY_PARAMS[DEFAULTS["dataset"]]:
        widget = next(w for w in at.sidebar.slider if w.key == f"toy_pinwheel_{p.key}")
        assert (widget.label, widget.min, widget.max, widget.value) == (p.label, p.low, p.high, p.default)


def test_mixture_weights_are_learned_by_default_and_uniform_in_the_papers_presets():
    """The ``prior`` setting reaches the model as a bool; the presets that run the paper's method keep pi uniform,
    and the CLI's 1/0 flag reaches the estimator."""
    assert ModelConfig(2, 2, **to_spec({}).model).learn_prior is True
    for title, preset in PRESETS.items():
        learned = ModelConfig(2, 2, **to_spec(preset.settings).model).learn_prior
        assert learned is not ("paper" in title), title
    assert from_query({"ds": "moons", "prior": "0"}) == ({"dataset": "moons", "params": {}, "prior": 0}, [])
    assert build_parser().parse_args(["train", "--out", "x", "--learn-prior", "0"]).learn_prior == 0
