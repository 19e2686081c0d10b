"""Structured-sparsity optimizers (``torch.optim`` style) and their schedules."""

from ramda.optim.base import RegularizedOptimizer
from ramda.optim.proxgen import ProxGen
from ramda.optim.proxsgd import ProxSGD
from ramda.optim.ramda import RAMDA
from ramda.optim.rmda import RMDA
from ramda.optim.schedules import MomentumSchedule, StageWiseLR

__all__ = ["RAMDA", "RMDA", "MomentumSchedule", "ProxGen", "ProxSGD", "RegularizedOptimizer", "StageWiseLR"]
