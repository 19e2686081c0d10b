"""The small CNN of the ``digits`` demo task (8×8 grey images, 10 classes)."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Three 3×3 conv blocks (conv → BatchNorm → ReLU, max-pooling after the 2nd and 3rd) and a two-layer head.

    Shapes: [B, 1, 8, 8] → [B, c1, 8, 8] → [B, c2, 4, 4] → [B, c3, 2, 2] → 4·c3 → hidden → 10.
    The conv and linear weights carry the paper's input-wise groups; BatchNorm and biases are unregularised.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 32), hidden: int = 64, classes: int = 10):
        super().__init__()
        c1, c2, c3 = channels

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

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
