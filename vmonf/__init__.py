"""VMoNF: variational mixtures of normalizing flows (Pires & Figueiredo, ESANN 2020) in PyTorch."""

from vmonf.estimator import VMoNF
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.train import DivergenceError, TrainConfig, Trainer

__all__ = ["VMoNF", "VMoNFModel", "ModelConfig", "Trainer", "TrainConfig", "DivergenceError"]
__version__ = "0.1.0"
