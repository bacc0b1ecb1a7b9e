"""Small composable network blocks (MONAI's TwoConv / Down / UpCat, in 2D).

A plugin wires these explicitly so that its ``forward`` mirrors the paper's figure::

    enc1 = ConvBlock(1, 64)          # (n, 1, H, W)      -> (n, 64, H, W)
    enc2 = Down(64, 128)             # (n, 64, H, W)     -> (n, 128, H/2, W/2)
    up = Up(128, 64, 64)             # (n, 128, H/2, W/2) + skip (n, 64, H, W) -> (n, 64, H, W)
    head = OutConv(64, 1)            # (n, 64, H, W)     -> (n, 1, H, W) logits

Networks return logits; the sigmoid of the papers is applied by the loss
(``BCEWithLogits``) and at inference (``predict_batches``), which is the numerically
stable equivalent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "ConvPoolClassifier", "Down", "MLP", "OutConv", "Up", "count_parameters"]


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU (the U-Net "double conv").

    Args:
        in_channels: input channels.
        out_channels: output channels (of both convolutions).
        dropout: dropout probability after the block (0: none).
        batch_norm: use BatchNorm2d (convolutions then have no bias).

    Shapes: ``(n, in, H, W) -> (n, out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0,
                 batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers.append(nn.Conv2d(cin, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pooling then a :class:`ConvBlock`: ``(n, in, H, W) -> (n, out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0) -> None:
        super().__init__(nn.MaxPool2d(2), ConvBlock(in_channels, out_channels, dropout=dropout))


class Up(nn.Module):
    """Up-sample by a 2x2 transposed convolution, concatenate the skip, then a ConvBlock.

    Args:
        in_channels: channels of the coarse input.
        skip_channels: channels of the skip connection from the encoder.
        out_channels: output channels (the transposed convolution also yields this many).

    Shapes: ``(n, in, H/2, W/2)`` and skip ``(n, skip, H, W)`` -> ``(n, out, H, W)``. When the
    skip is one pixel larger (odd sizes), the up-sampled map is zero-padded to match.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = ConvBlock(out_channels + skip_channels, out_channels, dropout=dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Conv2d):
    """1x1 convolution to the output channels (logits): ``(n, in, H, W) -> (n, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)


class ConvPoolClassifier(nn.Module):
    """The small sequential CNN classifier of many slice-level papers, one logit out.

    ``[Conv2d(k x k, valid) -> ReLU -> MaxPool2d(2)] x len(filters) -> Dropout -> Flatten
    -> (Linear(hidden) -> ReLU ->) Linear(1)``.

    Args:
        in_channels: input channels.
        image_size: input side (the flattened size is worked out from it).
        filters: output channels of each convolution block.
        kernel: convolution size.
        dropout: dropout probability before the dense layer(s).
        hidden: width of a hidden dense layer (0: the flattened maps go straight to the logit).

    Shapes: ``(n, in_channels, image_size, image_size) -> (n, 1)`` logits.
    """

    def __init__(self, in_channels: int, image_size: int, filters: tuple[int, ...] = (80, 80),
                 *, kernel: int = 3, dropout: float = 0.5, hidden: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in filters:
            layers += [nn.Conv2d(cin, cout, kernel), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        head: list[nn.Module] = [nn.Dropout(dropout), nn.Flatten()]
        if hidden:
            head += [nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)]
        else:
            head.append(nn.Linear(flat, 1))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Sequential):
    """Fully connected layers ``Linear -> ReLU -> Dropout`` per hidden width, then one logit.

    Shapes: ``(n, in_features) -> (n, 1)``.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (128, 64), *,
                 dropout: float = 0.5) -> None:
        layers: list[nn.Module] = []
        cin = in_features
        for width in hidden:
            layers += [nn.Linear(cin, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            cin = width
        layers.append(nn.Linear(cin, 1))
        super().__init__(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
