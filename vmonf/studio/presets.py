"""The seed's experiments as one-click presets for the 2-D playground, and settings <-> URL encoding.

A preset or a shared link is a flat ``settings`` dict; :func:`from_query` validates untrusted query
parameters against the same ranges the sliders allow, and returns the problems it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmonf.data import TOY_DATASETS


@dataclass(frozen=True)
class Preset:
    title: str
    watch: str  # one sentence: what to look for
    settings: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {p.title: p for p in [
    Preset("Mixture of Gaussians (warm-up)",
           "Round blobs: a Gaussian mixture is already right here, and each flow stays close to a Gaussian.",
           dict(dataset="gaussian mixture", params={"components": 4, "std": 0.35}, k=4, depth=2)),
    Preset("Pinwheel, 5 wings",
           "A single Gaussian cannot bend around a wing; a flow can. Watch each colour follow one wing.",
           dict(dataset="pinwheel", params={"wings": 5, "radial_std": 0.3, "rate": 0.4}, k=5, depth=4)),
    Preset("Pinwheel, 3 wings",
           "The seed's training animation: three flows curl into three wings within a few hundred steps.",
           dict(dataset="pinwheel", params={"wings": 3, "radial_std": 0.3, "rate": 0.25}, k=3, depth=4)),
    Preset("Two circles, unsupervised (the paper's failure)",
           "The paper's own failure: with the plain start the mixture splits the plane into two halves instead "
           "of two rings, a bad local optimum. (The paper's plain ELBO: the consistency term is off.)",
           dict(dataset="two circles", params={"noise": 0.04}, k=2, depth=4, init="random", consistency=0.0)),
    Preset("Two circles, semi-supervised",
           "32 labelled points per ring (diamonds) are enough to pull each flow onto its own ring.",
           dict(dataset="two circles", params={"noise": 0.04}, k=2, depth=4, n=1088, labels=32)),
]}

#: Defaults of every setting the playground has (what a fresh page shows).
DEFAULTS = dict(dataset="pinwheel", n=1000, data_seed=0, params={}, k=5, depth=4, hidden=64, lr=3e-3, batch=512,
                labels=0, init="auto", steps=0, seed=0, consistency=5.0)

LR_CHOICES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
HIDDEN_CHOICES = [16, 32, 64, 128]
BATCH_CHOICES = [64, 128, 256, 512, 1024]
INIT_CHOICES = ["auto", "kmeans", "spectral", "ward", "random"]
CONSISTENCY_CHOICES = [0.0, 0.5, 1.0, 2.0, 5.0]
# setting: (query name, parser, check) for the scalar settings
_FIELDS = {
    "n": ("n", int, lambda v: 200 <= v <= 5000),
    "data_seed": ("dseed", int, lambda v: 0 <= v <= 10_000),
    "k": ("k", int, lambda v: 1 <= v <= 12),
    "depth": ("depth", int, lambda v: 1 <= v <= 10),
    "hidden": ("hidden", int, lambda v: v in HIDDEN_CHOICES),
    "lr": ("lr", float, lambda v: v in LR_CHOICES),
    "batch": ("batch", int, lambda v: v in BATCH_CHOICES),
    "labels": ("labels", int, lambda v: 0 <= v <= 64),
    "init": ("init", str, lambda v: v in INIT_CHOICES),
    "steps": ("steps", int, lambda v: 0 <= v <= 20_000),
    "seed": ("seed", int, lambda v: 0 <= v <= 10_000),
    "consistency": ("cons", float, lambda v: v in CONSISTENCY_CHOICES),
}


def to_query(settings: dict) -> dict[str, str]:
    """Settings as short query parameters (only those that differ from the defaults, plus the data set)."""
    q = {"ds": settings["dataset"]}
    for key, (name, _, _) in _FIELDS.items():
        if settings.get(key, DEFAULTS[key]) != DEFAULTS[key]:
            q[name] = f"{settings[key]:g}" if isinstance(settings[key], float) else str(settings[key])
    for pname, value in settings.get("params", {}).items():
        q[f"p_{pname}"] = f"{value:g}" if isinstance(value, float) else str(value)
    return q


def from_query(query: dict[str, str], param_ranges: dict[str, dict[str, tuple]]) -> tuple[dict, list[str]]:
    """Parse query parameters into settings. Returns ``(settings, problems)``; bad values are skipped.

    ``param_ranges[dataset][param] = (low, high, type)`` bounds the data-set parameters.
    """
    problems: list[str] = []
    settings: dict = {"params": {}}
    ds = query.get("ds", DEFAULTS["dataset"])
    if ds not in TOY_DATASETS:
        return {}, [f"unknown data set {ds!r}"]
    settings["dataset"] = ds
    for key, (name, parse, ok) in _FIELDS.items():
        if name not in query:
            continue
        try:
            value = parse(query[name])
        except ValueError:
            problems.append(f"{name}={query[name]!r} is not a {parse.__name__}")
            continue
        if ok(value):
            settings[key] = value
        else:
            problems.append(f"{name}={query[name]!r} is out of range")
    for name, raw in query.items():
        if not name.startswith("p_"):
            continue
        pname = name[2:]
        bounds = param_ranges.get(ds, {}).get(pname)
        try:
            value = bounds[2](raw) if bounds else None
        except ValueError:
            value = None
        if bounds is None or value is None or not bounds[0] <= value <= bounds[1]:
            problems.append(f"{name}={raw!r} is not a valid setting of {ds}")
            continue
        settings["params"][pname] = value
    return settings, problems
