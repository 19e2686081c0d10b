"""The small CNN of the ``digits`` demo task (8×8 grey images, 10 classes)."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Three 3×3 conv blocks (conv → BatchNorm → ReLU, max-pooling after the 2nd and 3rd) and a two-layer head.

    Shapes: [B, 1, 8, 8] → [B, c1, 8, 8] → [B, c2, 4, 4] → [B, c3, 2, 2] → 4·c3 → hidden → 10.
    The conv and linear weights carry the paper's input-wise groups; BatchNorm and biases are unregularised.
    ``batchnorm=False`` replaces each BatchNorm by a conv bias (a model whose output for a sample does not depend
    on the rest of its batch, e.g. to compare data-parallel runs with one-process runs exactly).
    """

    def __init__(
        self,
        channels: tuple[int, int, int] = (16, 32, 32),
        hidden: int = 64,
        classes: int = 10,
        batchnorm: bool = True,
    ):
        super().__init__()
        c1, c2, c3 = channels

        def block(cin: int, cout: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)
            norm = [nn.BatchNorm2d(cout)] if batchnorm else []
            return [conv, *norm, nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, c1),
            *block(c1, c2),
            nn.MaxPool2d(2),
            *block(c2, c3),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * c3, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
