"""VMoNF: variational mixtures of normalizing flows (Pires & Figueiredo, ESANN 2020) in PyTorch.

The public names load lazily, so that light modules (``vmonf.data``, ``vmonf.studio.figures``, ``vmonf.studio.job``)
can be imported without paying for torch and scikit-learn: the app's first paint depends on it.
"""

from importlib import import_module

__all__ = ["VMoNF", "PAPER_RECIPE", "VMoNFModel", "ModelConfig", "Trainer", "TrainConfig", "DivergenceError"]
__version__ = "0.1.0"

_WHERE = {"VMoNF": "vmonf.estimator", "PAPER_RECIPE": "vmonf.estimator", "VMoNFModel": "vmonf.model",
          "ModelConfig": "vmonf.model", "Trainer": "vmonf.train", "TrainConfig": "vmonf.train",
          "DivergenceError": "vmonf.train"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'vmonf' has no attribute {name!r}")
