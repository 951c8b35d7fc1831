"""The paper's experiments as one-click presets for the 2-D playground.

A preset is a flat ``settings`` dict of :mod:`vmonf.studio.settings` keys (the rest keep their defaults),
the same kind of dict a shared link holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    Preset("Pinwheel, 5 wings, the paper's recipe",
           "The method as published: a random start, a uniform pi, q's temperature annealed, 8 coupling blocks "
           "and the plain ELBO (no consistency term). Compare it with 'Pinwheel, 5 wings', which adds our start "
           "and the consistency term (docs/RESULTS.md, the ablation).",
           dict(dataset="pinwheel", params={"wings": 5, "radial_std": 0.3, "rate": 0.4}, k=5, depth=8, init="random",
                consistency=0.0, temperature=1e-3, prior=0)),
    Preset("Two circles, unsupervised (the paper's failure)",
           "The paper's own failure: with the plain start the mixture splits the plane into two halves instead "
           "of two rings, a bad local optimum. (The paper's plain ELBO: the consistency term is off.)",
           dict(dataset="two circles", params={"noise": 0.04}, k=2, depth=4, init="random", consistency=0.0, prior=0)),
    Preset("Two circles, semi-supervised",
           "32 labelled points per ring (diamonds) are enough to pull each flow onto its own ring.",
           dict(dataset="two circles", params={"noise": 0.04}, k=2, depth=4, n=1088, labels=32)),
]}
