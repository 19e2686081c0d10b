"""ramda: RAMDA and the structured-sparsity optimizers it is compared with, plus the paper's reproduction.

from ramda import RAMDA, param_groups
opt = RAMDA(param_groups(model, lam=4e-7), lr=1e-2, momentum=1e-2)
"""

from ramda.optim import RAMDA, RMDA, MomentumSchedule, ProxGen, ProxSGD, StageWiseLR
from ramda.structure import param_groups, sparsity_report, weighted_group_sparsity

__version__ = "0.1.0"

__all__ = [
    "RAMDA",
    "RMDA",
    "MomentumSchedule",
    "ProxGen",
    "ProxSGD",
    "StageWiseLR",
    "param_groups",
    "sparsity_report",
    "weighted_group_sparsity",
]
