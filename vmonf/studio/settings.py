"""The playground's settings, each described once: name, label, URL key, range or choices, default, help.

Everything that shows, stores or passes on a setting reads it from here: the playground's widgets
(``pages/playground.py``), the share link and presets (:mod:`vmonf.studio.presets`), the :class:`JobSpec` a run
is built from (:func:`to_spec`) and the CLI's flags (:func:`add_cli_flags`). A setting added here appears in
all of them; a range changed here changes the slider and what a shared link may ask for together.

The ranges bound what the app and its links accept. The CLI takes the same names, defaults and help, and
any value the library takes (a research run may want a width or depth the sliders do not offer).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from vmonf.data import TOY_DATASETS


@dataclass(frozen=True)
class Setting:
    """One setting. ``choices`` (a list of allowed values) or ``low``/``high`` bound it; ``kind`` parses it.

    ``widget`` is the control that shows it: ``slider`` (a range), ``select_slider`` (ordered choices),
    ``selectbox`` (unordered choices) or ``number`` (a whole number typed in). ``target`` is where it goes
    in a :class:`JobSpec`: a field (``"n_components"``) or a key of its ``model``/``train`` dicts
    (``"train.lr"``). ``cli`` is its flag (``None``: the CLI has none); ``cli_default`` replaces the
    default there and ``cli_help`` the help where the two differ in meaning (the app's ``steps=0`` means "until
    you stop it"; the CLI's ``--seed`` seeds the data too).
    """

    key: str
    label: str
    help: str
    default: object
    kind: type = int
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    widget: str = "slider"
    query: str = ""
    target: str = ""
    cli: str | None = None
    cli_default: object = None
    cli_help: str = ""
    show: Callable[[object], str] | None = field(default=None, compare=False)  # how a choice is written

    def parse(self, raw: str):
        """The value a query string or flag holds; ``ValueError`` when it is not a ``kind``."""
        return self.kind(raw)

    def allows(self, value) -> bool:
        if self.choices:
            return value in self.choices
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self, value) -> str:
        return self.show(value) if self.show else (f"{value:g}" if isinstance(value, float) else str(value))


def _g(v: float) -> str:
    return f"{v:g}"


#: The scalar settings of the playground, in the order the sidebar shows them.
SETTINGS: dict[str, Setting] = {s.key: s for s in [
    Setting("n", "points", "How many points to generate.", 1000, low=200, high=5000, step=8, query="n",
            target="n_samples", cli="--samples", cli_help="How many points to generate (toy data sets)."),
    Setting("data_seed", "data seed", "Same seed, same points: share it to reproduce a run.", 0, low=0, high=10_000,
            widget="number", query="dseed", target="data_seed"),
    Setting("k", "components K", "How many flows (clusters) the mixture has (at most one per data point).", 5,
            low=1, high=12, query="k", target="n_components", cli="--components"),
    Setting("depth", "flow depth", "Coupling layers per component flow: deeper flows can bend more.", 4,
            low=1, high=10, query="depth", target="model.depth", cli="--depth"),
    Setting("hidden", "hidden width", "Neurons in each layer of the networks inside the flows.", 64,
            choices=(16, 32, 64, 128), widget="select_slider", query="hidden", target="model.hidden", cli="--hidden"),
    Setting("prior", "mixture weights π",
            "learned: π trains with the rest, starting from the starting partition's share of each part, so clusters "
            "of very different sizes each get a component of their own size. uniform: every π is 1/K, as in the "
            "paper; a small cluster's component then reaches into its neighbours.", 1, choices=(1, 0),
            widget="selectbox", query="prior", target="model.learn_prior", cli="--learn-prior",
            cli_help="1: learn the mixture weights (from the start's shares); 0: uniform, as in the paper.",
            show=lambda v: "learned" if v else "uniform (the paper)"),
    Setting("lr", "learning rate", "Adam step size. Too high and training diverges.", 3e-3, kind=float,
            choices=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), widget="select_slider", query="lr", target="train.lr",
            cli="--lr", show=_g),
    Setting("batch", "batch size", "Points per training step.", 512, choices=(64, 128, 256, 512, 1024),
            widget="select_slider", query="batch", target="train.batch_size", cli="--batch-size"),
    Setting("labels", "labelled points per cluster",
            "Semi-supervised mode: reveal this many true labels per cluster (0 = unsupervised).", 0, low=0, high=64,
            query="labels", target="labelled_per_class", cli="--labels"),
    Setting("init", "initialisation",
            "How the components start before training. auto makes the k-means, spectral, local-scale spectral, "
            "Ward, Gaussian-mixture and repeated two-way cut partitions (you see each) and keeps the one that cuts "
            "the fewest strong links between neighbouring points; random is the paper's plain start.", "auto",
            kind=str, choices=("auto", "kmeans", "spectral", "local", "ward", "gmm", "ncut", "random"),
            widget="selectbox", query="init",
            target="train.init", cli="--init"),
    Setting("steps", "stop after (steps)",
            "Training pauses at this step; Resume goes on. 0 = train until you press Stop.", 0, low=0, high=20_000,
            step=500, query="steps", target="max_steps", cli="--steps", cli_default=1500,
            cli_help="Training steps."),
    Setting("seed", "training seed", "Seeds the model and mini-batches.", 0, low=0, high=10_000, widget="number",
            query="seed", target="train.seed", cli="--seed", cli_help="Seeds the data, the model and mini-batches."),
    Setting("consistency", "consistency weight",
            "Penalise the model (q(c|x) and the flows' own responsibilities) for changing its mind when x is "
            "nudged by a little noise. It makes clustering reliable across seeds, and steps take longer "
            "(docs/BEYOND.md has the figures). Off is the paper's plain ELBO.", 5.0, kind=float,
            choices=(0.0, 0.5, 1.0, 2.0, 5.0), widget="select_slider", query="cons", target="train.consistency",
            cli="--consistency", show=lambda v: "off (the paper's ELBO)" if v == 0 else f"{v:g}"),
    Setting("temperature", "q temperature",
            "The paper's annealing: q(c|x)'s logits are divided by T = exp(-rate x step), so q starts soft and "
            "sharpens as training goes on. Off keeps T = 1.", 0.0, kind=float, choices=(0.0, 1e-3),
            widget="select_slider", query="temp", target="train.temperature_decay", cli="--temperature-decay",
            show=lambda v: "off" if v == 0 else f"exp(-{v:g} x step)"),
]}


def _param(key: str, label: str, low, high, default, step, help: str) -> Setting:
    return Setting(key, label, help, default, kind=type(default), low=low, high=high, step=step, query=f"p_{key}",
                   target=f"toy_params.{key}")


#: Each toy data set's own parameters (``toy_params`` of a :class:`JobSpec`; ``p_<name>`` in a link).
TOY_PARAMS: dict[str, list[Setting]] = {
    "pinwheel": [_param("wings", "wings", 2, 8, 5, 1, "How many curved arms (true clusters)."),
                 _param("rate", "bend", 0.0, 1.0, 0.4, 0.05, "How strongly each wing curls; 0 gives straight blobs."),
                 _param("radial_std", "radial noise", 0.05, 0.6, 0.3, 0.05, "Spread along each wing.")],
    "two circles": [_param("noise", "noise", 0.0, 0.2, 0.04, 0.01, "Jitter of the points around each ring.")],
    "moons": [_param("noise", "noise", 0.0, 0.3, 0.08, 0.01, "Jitter of the points around each moon.")],
    "gaussian mixture": [_param("components", "blobs", 2, 8, 4, 1, "How many Gaussian blobs (true clusters)."),
                         _param("std", "blob width", 0.1, 1.0, 0.35, 0.05, "Standard deviation of each blob.")],
    "spirals": [_param("arms", "arms", 2, 4, 2, 1, "How many spiral arms (true clusters)."),
                _param("noise", "noise", 0.0, 0.15, 0.05, 0.01, "Jitter of the points around each arm.")],
    "banana": [_param("bend", "bend", 0.2, 2.0, 1.2, 0.1, "How curved each crescent is.")],
    "checkerboard": [_param("squares", "board size", 2, 6, 4, 1, "Squares per side; half of them hold points.")],
}
#: The parameter that is a data set's number of true clusters (the K slider starts there).
TRUE_K = {"pinwheel": "wings", "gaussian mixture": "components", "spirals": "arms"}

#: Every setting's default (what a fresh page shows).
DEFAULTS: dict = {"dataset": "pinwheel", "params": {}, **{s.key: s.default for s in SETTINGS.values()}}


def true_k(dataset: str, params: dict) -> int:
    """The data set's number of true clusters, for the K slider's starting value."""
    if dataset in TRUE_K:
        return int(params.get(TRUE_K[dataset], next(p.default for p in TOY_PARAMS[dataset]
                                                     if p.key == TRUE_K[dataset])))
    return 2 if dataset in ("two circles", "moons", "banana") else 4


def to_spec(settings: dict, *, device: str = "auto", model: dict | None = None, train: dict | None = None,
            **fields):
    """The :class:`~vmonf.studio.worker.JobSpec` a settings dict describes. ``model`` and ``train`` add
    options the settings do not carry (the beyond-the-paper ones); ``fields`` set other JobSpec fields
    (a CSV's ``dataset="csv"`` and ``points``)."""
    from vmonf.studio.worker import JobSpec

    s = {**DEFAULTS, **settings}
    out: dict = {"dataset": s["dataset"], "toy_params": dict(s["params"]), "device": device,
                 "model": dict(model or {}), "train": dict(train or {})}
    for setting in SETTINGS.values():
        where, _, name = setting.target.partition(".")
        if name:
            out[where][name] = s[setting.key]
        else:
            out[where] = s[setting.key]
    return JobSpec(**{**out, **fields})


def to_query(settings: dict) -> dict[str, str]:
    """Settings as short query parameters (only those that differ from the defaults, plus the data set)."""
    q = {"ds": settings["dataset"]}
    for s in SETTINGS.values():
        if settings.get(s.key, s.default) != s.default:
            q[s.query] = f"{settings[s.key]:g}" if isinstance(settings[s.key], float) else str(settings[s.key])
    for pname, value in settings.get("params", {}).items():
        q[f"p_{pname}"] = f"{value:g}" if isinstance(value, float) else str(value)
    return q


def from_query(query: dict[str, str]) -> tuple[dict, list[str]]:
    """Parse untrusted query parameters into settings. Returns ``(settings, problems)``; bad values are
    skipped, each with the reason in ``problems``."""
    problems: list[str] = []
    ds = query.get("ds", DEFAULTS["dataset"])
    if ds not in TOY_DATASETS:
        return {}, [f"unknown data set {ds!r}"]
    settings: dict = {"dataset": ds, "params": {}}
    params = {p.query: p for p in TOY_PARAMS.get(ds, [])}
    for s in [*SETTINGS.values(), *params.values()]:
        if s.query not in query:
            continue
        raw = query[s.query]
        try:
            value = s.parse(raw)
        except ValueError:
            problems.append(f"{s.query}={raw!r} is not a {s.kind.__name__}")
            continue
        if not s.allows(value):
            problems.append(f"{s.query}={raw!r} is out of range")
        elif s.query in params:
            settings["params"][s.key] = value
        else:
            settings[s.key] = value
    problems += [f"{name}={raw!r} is not a setting of {ds}" for name, raw in query.items()
                 if name.startswith("p_") and name not in params]
    return settings, problems


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every setting the CLI has, with the setting's default and help. Choices bind the
    flag only where they are names (``--init``); numbers take any value of their type."""
    for s in SETTINGS.values():
        if s.cli is None:
            continue
        default = s.default if s.cli_default is None else s.cli_default
        choices = list(s.choices) if s.choices and s.kind is str else None
        parser.add_argument(s.cli, dest=s.cli.lstrip("-").replace("-", "_"), type=s.kind, default=default,
                            choices=choices, help=(s.cli_help or s.help).replace("%", "%%"))
