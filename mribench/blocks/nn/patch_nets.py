"""Building blocks of the patch-wise CNNs: maxout convolutions, the two pathways of Havaei et
al. 2017 and the per-scale convolution stack of the multi-scale CNN.

Every block uses *valid* convolutions, so a network made of them classifies the centre pixel of
a window when given a window, and every pixel of a slice when given the whole (padded) slice:

- :class:`Maxout2d`, :class:`LocalPathway`, :class:`GlobalPathway` pool with stride 1, so they
  are fully convolutional as they stand: a ``(n, C, 33, 33)`` window gives ``(n, k, 21, 21)``
  maps, and a slice padded by 16 px gives a dense map with one column per pixel.
- :class:`ScaleStack` pools with stride 2 on windows (``forward``) and, on a whole slice,
  runs the same weights as an *a trous* (dilated) network (``forward_dense``: the pools
  become stride-1 pools and each later layer's dilation doubles), the shift-and-stitch
  equivalence of Li et al. ("Highly efficient forward and backward propagation of
  convolutional neural networks for pixelwise classification", 2014): one pass per slice
  gives exactly what one pass per pixel would.

Shapes are documented per block; all take and return ``(n, C, H, W)`` float tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FFTConv2d", "GlobalPathway", "LocalPathway", "MaxPool2dStride1", "Maxout2d",
           "direct_convolutions",
           "ScaleStack", "fft_conv2d", "max_pool_stride1"]


def _fft_size(n: int) -> int:
    """The smallest 2-3-5-smooth integer >= n (sizes the FFT is fastest for)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               max_bytes: int = 1 << 28) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` (valid, stride 1, no dilation, one group) through
    ``torch.fft``: a cross-correlation is a product of spectra, ``X * conj(W)``, summed over
    the input channels. The FFT side is the smallest 2-3-5-smooth size >= the input's, which
    is enough: the valid outputs never wrap around. Images are transformed a few at a time
    (at most ``max_bytes`` of spectra). The values equal the direct convolution's to float32
    rounding (about 1e-6 for the two-pathway CNN's 21 x 21 x 224 output layer).

    Shapes: ``(n, C, H, W)``, ``(O, C, kh, kw)`` -> ``(n, O, H - kh + 1, W - kw + 1)``.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = h - kh + 1, w - kw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than the kernel {(kh, kw)}")
    size = (_fft_size(h), _fft_size(w))
    kernel = torch.fft.rfft2(weight.to(x.dtype), s=size).conj()  # (O, C, fh, fw)
    per_image = c * size[0] * (size[1] // 2 + 1) * 2 * x.element_size()
    step = max(1, max_bytes // max(1, per_image))
    outs = []
    for start in range(0, n, step):
        spectra = torch.fft.rfft2(x[start:start + step], s=size)  # (m, C, fh, fw)
        if o == 1:
            product = (spectra * kernel).sum(dim=1, keepdim=True)
        else:
            product = torch.einsum("nchw,ochw->nohw", spectra, kernel)
        outs.append(torch.fft.irfft2(product, s=size)[..., :oh, :ow])
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out.contiguous()


class FFTConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters and ``state_dict``, so checkpoints of either load in
    the other) that, at inference on large inputs, convolves through :func:`fft_conv2d`.

    The FFT is used only in eval mode without autograd, for a valid, stride-1, undilated,
    one-group convolution whose output has at least ``fft_min_pixels`` pixels per map and
    whose kernel is at least ``fft_min_kernel`` wide: the dense pass of a patch CNN over a
    whole slice, where a large kernel (the two-pathway CNN's 21 x 21 output layer) makes the
    direct convolution slow. Training, and windows, use torch's own convolution unchanged, and
    so does a traced or exported network (``bench export``).
    """

    fft_min_pixels: int = 32 * 32
    fft_min_kernel: int = 7

    #: False inside :func:`direct_convolutions`.
    enabled: bool = True

    def _use_fft(self, x: torch.Tensor) -> bool:
        if not FFTConv2d.enabled or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False  # an exported graph holds the direct convolution (no FFT op needed)
        if self.training or (torch.is_grad_enabled()
                             and (x.requires_grad or self.weight.requires_grad)):
            return False
        if (self.stride != (1, 1) or self.dilation != (1, 1) or self.groups != 1
                or self.padding not in ((0, 0), "valid") or x.dim() != 4
                or not x.dtype.is_floating_point or x.dtype == torch.float16):
            return False
        kh, kw = self.kernel_size
        out = (x.shape[-2] - kh + 1) * (x.shape[-1] - kw + 1)
        return min(kh, kw) >= self.fft_min_kernel and out >= self.fft_min_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_fft(x):
            return fft_conv2d(x, self.weight, self.bias)
        return super().forward(x)


@contextmanager
def direct_convolutions() -> Iterator[None]:
    """Within the block every :class:`FFTConv2d` runs torch's direct convolution: the
    computation an exported (traced) graph holds, which ``bench export`` compares it with."""
    before, FFTConv2d.enabled = FFTConv2d.enabled, False
    try:
        yield
    finally:
        FFTConv2d.enabled = before


def max_pool_stride1(x: torch.Tensor, kernel: int, dilation: int = 1) -> torch.Tensor:
    """``F.max_pool2d(x, kernel, stride=1, dilation=dilation)`` (no padding).

    Without autograd it is computed as a separable running maximum over shifted views, about
    ten times faster than torch's CPU kernel for stride 1 (same values: a max is exact);
    with autograd it is torch's own pool (whose backward is cheap).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, kernel, stride=1, dilation=dilation)
    span = (kernel - 1) * dilation
    h, w = x.shape[-2] - span, x.shape[-1] - span
    if h < 1 or w < 1:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than the pooling window")
    rows = x[..., :h, :]
    for i in range(1, kernel):
        rows = torch.maximum(rows, x[..., i * dilation:i * dilation + h, :])
    out = rows[..., :w]
    for i in range(1, kernel):
        out = torch.maximum(out, rows[..., i * dilation:i * dilation + w])
    return out


class MaxPool2dStride1(nn.Module):
    """A ``kernel x kernel`` max-pool with stride 1 (see :func:`max_pool_stride1`).

    Shapes: ``(n, C, H, W) -> (n, C, H - kernel + 1, W - kernel + 1)``.
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_stride1(x, self.kernel)


class Maxout2d(nn.Module):
    """A valid convolution to ``out_channels * pieces`` maps, then the max over each group of
    ``pieces`` consecutive maps (Goodfellow et al. 2013's maxout, as Havaei et al. use it).
    ``batch_norm`` normalises the convolution's maps before the max (not in the paper; in eval
    mode a per-channel affine map, so whole-slice inference stays exact).

    Shapes: ``(n, in, H, W) -> (n, out, H - k + 1, W - k + 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 pieces: int = 2, batch_norm: bool = False) -> None:
        super().__init__()
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.out_channels, self.pieces = out_channels, pieces
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, kernel_size,
                              bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels * pieces) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        n, _, h, w = y.shape
        return y.view(n, self.out_channels, self.pieces, h, w).amax(dim=2)


class LocalPathway(nn.Sequential):
    """Havaei et al.'s local pathway: maxout 7x7 conv, 4x4 max-pool (stride 1), maxout 3x3
    conv, 2x2 max-pool (stride 1).

    Shapes: ``(n, C, H, W) -> (n, maps, H - 12, W - 12)`` (33 x 33 windows -> 21 x 21).
    """

    shrink = 12

    def __init__(self, in_channels: int, maps: int = 64, pieces: int = 2,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = [
            Maxout2d(in_channels, maps, 7, pieces, batch_norm), MaxPool2dStride1(4),
            Maxout2d(maps, maps, 3, pieces, batch_norm), MaxPool2dStride1(2),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class GlobalPathway(nn.Sequential):
    """Havaei et al.'s global pathway: one maxout 13x13 convolution.

    Shapes: ``(n, C, H, W) -> (n, maps, H - 12, W - 12)`` (33 x 33 windows -> 21 x 21).
    """

    shrink = 12

    def __init__(self, in_channels: int, maps: int = 160, pieces: int = 2,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = [Maxout2d(in_channels, maps, 13, pieces, batch_norm)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class ScaleStack(nn.Module):
    """The convolution stack applied, with its own weights, to each scale of the multi-scale
    CNN: valid ``k x k`` convolutions with ReLU, a 2x2 max-pool after those marked, and a last
    convolution covering what remains of the window (a fully connected layer written as a
    convolution), so a ``patch x patch`` window becomes a ``features``-vector.

    Args:
        in_channels: input channels.
        channels: output channels of each convolution before the last.
        kernels: their kernel sizes.
        pools: whether a 2x2 max-pool follows each of them.
        features: outputs of the last ("fully connected") convolution.
        patch: window side (must pool evenly and leave at least 1 px).
        batch_norm: batch normalisation after each convolution but the last (in eval mode a
            per-channel affine map, so the dense network stays exact).

    Shapes: ``forward``: ``(n, C, patch, patch) -> (n, features, 1, 1)``;
    ``forward_dense(x, d)``: ``(n, C, H + (patch - 1) d, W + (patch - 1) d) -> (n, features, H, W)``
    where the input holds every pixel's window sampled with step ``d``.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 32),
                 kernels: Sequence[int] = (5, 3, 3), pools: Sequence[bool] = (True, True, False),
                 features: int = 64, patch: int = 32, batch_norm: bool = False) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(pools):
            raise ValueError("channels, kernels and pools must have the same length")
        self.patch = patch
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.pool_after: list[bool] = []
        side, cin = patch, in_channels
        for cout, k, pool in zip(channels, kernels, pools, strict=True):
            side -= k - 1
            if side < 1 or (pool and side % 2):
                raise ValueError(f"a {patch} px window does not fit the stack {list(kernels)} "
                                 f"with pools {list(pools)} (side {side} before pooling)")
            side = side // 2 if pool else side
            self.layers.append(nn.Conv2d(cin, cout, k, bias=not batch_norm))
            self.norms.append(nn.BatchNorm2d(cout) if batch_norm else nn.Identity())
            self.pool_after.append(bool(pool))
            cin = cout
        self.fc = nn.Conv2d(cin, features, side)
        self.fc_kernel = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm, pool in zip(self.layers, self.norms, self.pool_after, strict=True):
            x = F.relu(norm(conv(x)))
            if pool:
                x = F.max_pool2d(x, 2)
        return F.relu(self.fc(x))

    def forward_dense(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        """The same network on every pixel at once (dilated convolutions, stride-1 pools)."""
        if self.training and any(isinstance(n, nn.BatchNorm2d) for n in self.norms):
            raise RuntimeError("forward_dense needs eval mode (batch statistics are per window)")
        d = dilation
        for conv, norm, pool in zip(self.layers, self.norms, self.pool_after, strict=True):
            x = F.relu(norm(F.conv2d(x, conv.weight, conv.bias, dilation=d)))
            if pool:
                x = max_pool_stride1(x, 2, dilation=d)
                d *= 2
        return F.relu(F.conv2d(x, self.fc.weight, self.fc.bias, dilation=d))
