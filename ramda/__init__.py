"""ramda: RAMDA and the structured-sparsity optimizers it is compared with, plus the paper's reproduction."""

__version__ = "0.1.0"
