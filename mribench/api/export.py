"""How a fitted deep method runs outside mribench: the recipe ``bench export`` writes down.

A deep plugin's ``export_recipe()`` returns an :class:`ExportRecipe`: the input shape of each
of its networks (the batch axis left out: it is dynamic in the exported graph), what their
output means, and the steps before and after the networks as JSON-able dicts, in the order
they run. ``outside_graph`` names, in plain words, every part of the pipeline that is not in
the exported graph (feature extraction, clustering, test-time flips, thresholds, a dense CRF),
so a deployer knows what to re-implement. :mod:`mribench.model.export` adds what is common to
every method (the source row, versions, the area threshold and variants of a segmenter, the
verification) and writes ``spec.json``.

The step helpers below describe mribench's own shared operations once, so every plugin names
them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ExportRecipe", "label_step", "load_step", "resize_back_step", "resize_step", "sigmoid_step"]


@dataclass(frozen=True)
class ExportRecipe:
    """The network inputs and the pre- and post-processing of a fitted deep method.

    Attributes
    ----------
    inputs : tuple of shapes
        Per network (in the order ``build_network(index)`` builds them), its input shape
        without the batch axis, e.g. ``((1, 128, 128),)``.
    output : str
        What each network returns (e.g. "tumour logit per pixel, (n, 1, H, W)").
    preprocess, postprocess : tuple of dict
        The steps before and after the networks, each ``{"step": name, ...settings}``.
    outside_graph : tuple of str
        Every part of the pipeline that runs outside the exported graph, in plain words.
    arrays : dict
        Learned arrays the steps need (e.g. a PCA's components), saved to ``preprocess.npz``
        beside ``spec.json`` and named in the steps.
    """

    inputs: tuple[tuple[int, ...], ...]
    output: str
    preprocess: tuple[dict[str, Any], ...] = ()
    postprocess: tuple[dict[str, Any], ...] = ()
    outside_graph: tuple[str, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def load_step() -> dict[str, Any]:
    """Reading an image file as mribench does (:func:`mribench.data.imageio.load_image`)."""
    return {"step": "load",
            "how": "decode the file; 8-bit images to grayscale (PIL mode 'L', alpha composited "
                   "on black), 16-bit and float images min-max scaled to [0, 1]; then resize "
                   "to the model's image_size (PIL bilinear, anti-aliased when shrinking) and "
                   "divide 8-bit values by 255: a float32 slice in [0, 1]",
            "code": "mribench.data.imageio.load_image"}


def resize_step(size: int | None, what: str = "slice") -> dict[str, Any]:
    """Resizing a slice to the network's working side ``size`` (None: kept as loaded)."""
    if size is None:
        return {"step": "resize", "size": None, "how": f"the {what} stays at image_size"}
    return {"step": "resize", "size": int(size),
            "how": f"the {what} to size x size: torch.nn.functional.interpolate(mode="
                   "'bilinear', align_corners=False, antialias=True when shrinking)",
            "code": "mribench.blocks.nn.data.resize_tensor"}


def sigmoid_step(offset: float = 0.0) -> dict[str, Any]:
    """The logistic function of the logits shifted by ``offset``: ``1 / (1 + exp(offset - z))``."""
    return {"step": "sigmoid", "logit_offset": float(offset),
            "how": "probability = 1 / (1 + exp(-(logit - logit_offset)))"}


def label_step(threshold: float = 0.5) -> dict[str, Any]:
    """An image classifier's label rule on its probability."""
    return {"step": "label", "threshold": float(threshold),
            "how": f"score = probability; label = 1 (tumour) when probability >= {threshold}"}


def resize_back_step(threshold: float, rule: str = ">=") -> dict[str, Any]:
    """Probability maps back at each slice's own size, then the mask rule."""
    return {"step": "resize_back", "threshold": float(threshold), "rule": rule,
            "how": "each probability map to its slice's loaded size (bilinear, as resize), "
                   f"then mask = probability {rule} threshold",
            "code": "mribench.blocks.nn.data.resize_back"}
