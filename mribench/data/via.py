"""Rasterise VGG Image Annotator (VIA) regions into boolean masks.

Br35H's Mask-RCNN annotations are VIA 2 exports: a JSON object mapping ``"<filename><size>"``
to ``{"filename", "size", "regions": [{"shape_attributes": {...}}, ...]}``. Regions are drawn
at the image's *original* size (VIA coordinates are original-image pixels) and united; the
mask is resized afterwards with the image (:func:`mribench.data.imageio.resize_mask`).

Shapes, with the rasteriser chosen for each (tests/test_via.py checks hand-computed pixels):

- ``polygon`` / ``polyline`` (closed): :func:`skimage.draw.polygon`, pixel centres at integer
  coordinates; pixels on the outline are included (a square with corners at 1 and 5 fills
  rows and columns 1..5). Chosen over PIL's ``ImageDraw.polygon``, which differs on about 1.1%
  of Br35H's mask pixels (edge pixels), because it is the same library as the ellipse and disk.
- ``ellipse`` (``cx, cy, rx, ry, theta``): ``skimage.draw.ellipse(cy, cx, ry, rx,
  rotation=-theta)``; VIA's ``theta`` turns the other way from scikit-image's ``rotation``
  (checked on Br35H's 131 rotated ellipses by overlay; ``+theta`` gets 13.5% of their pixels
  wrong). Pixels strictly inside the ellipse are filled.
- ``circle`` (``cx, cy, r``): :func:`skimage.draw.disk`, pixels strictly inside.
- ``rect`` (``x, y, width, height``): the pixels ``x .. x+width-1`` by ``y .. y+height-1``.

Other shapes (``point``) carry no area and are a :class:`~mribench.api.errors.DataError`, as are
polygons with fewer than three points and missing or non-numeric coordinates.

Coordinates outside the image (negative, past its edge, or absurd like 1e12) are clipped to
it: the shape is drawn and only its pixels inside the image are kept. So that absurd values
stay exact in floating point, points and centres are first clamped to a margin of the image's
height plus width around it and radii are capped at that margin (no effect on a shape that
lies within it). Each such region logs one warning on the ``mribench`` logger naming the image
and the region (its index in the image's list). A region with a NaN or
infinite coordinate is skipped with a warning. A VIA ``filename`` that is absolute or climbs
out of its folder (``..``) is a DataError naming the JSON file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from skimage import draw

from mribench.api.errors import DataError

__all__ = ["rasterise", "read_via", "region_mask"]

_log = logging.getLogger("mribench")


def _number(value: Any) -> float:
    """``float(value)`` for a number (or numeric text); anything else raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: clipped like any far coordinate
        return 1e308 if isinstance(value, int) and value > 0 else -1e308


def _numbers(attrs: dict[str, Any], keys: tuple[str, ...], source: str, shape: str) -> list[float]:
    try:
        return [_number(attrs[k]) for k in keys]
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"{source}: VIA {shape} region needs numeric {', '.join(keys)}, got "
            f"{ {k: attrs.get(k) for k in keys} }; fix the annotation file"
        ) from None


def _points(values: list[Any], axis: str, source: str) -> np.ndarray:
    try:
        return np.asarray([_number(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(f"{source}: VIA polygon's all_points_{axis} must hold numbers, got "
                        f"{str(bad)[:40]!r}; fix the annotation file") from None


def _is_number(value: Any) -> bool:
    try:
        _number(value)
    except ValueError:
        return False
    return True


def _clip(values: list[float], low: float, high: float) -> list[float]:
    return [min(max(v, low), high) for v in values]


def region_mask(attrs: dict[str, Any], height: int, width: int, *, source: str = "",
                region: int | None = None) -> np.ndarray:
    """Boolean (height, width) mask of one VIA region's ``shape_attributes``.

    ``region`` (its index in the image's list) only names the region in warnings.
    """
    shape = (int(height), int(width))
    mask = np.zeros(shape, dtype=bool)
    name = str(attrs.get("name", ""))
    where = source or "annotation"
    label = f"{where}: VIA {name} region" + (f" {region}" if region is not None else "")
    xmax, ymax = float(shape[1] - 1), float(shape[0] - 1)
    far = float(shape[0] + shape[1])  # clamp margin: exact for every shape that lies within it

    def usable(values: list[float]) -> bool:
        if all(math.isfinite(v) for v in values):
            return True
        _log.warning("%s has a NaN or infinite coordinate; region skipped", label)
        return False

    def clip(xs: list[float], ys: list[float], radii: tuple[float, ...] = ()
             ) -> tuple[list[float], list[float], list[float]]:
        if (min(xs) < 0 or max(xs) > xmax or min(ys) < 0 or max(ys) > ymax
                or any(r > far for r in radii)):
            _log.warning("%s has coordinates outside the %dx%d image; clipped to the image",
                         label, shape[1], shape[0])
        return (_clip(xs, -far, xmax + far), _clip(ys, -far, ymax + far),
                _clip(list(radii), 0.0, far))

    if name in ("polygon", "polyline"):
        xs, ys = attrs.get("all_points_x"), attrs.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise DataError(f"{where}: VIA polygon needs equal-length all_points_x/all_points_y "
                            "lists; fix the annotation file")
        if len(xs) < 3:
            raise DataError(f"{where}: VIA polygon has {len(xs)} point(s), needs at least 3; "
                            "redraw or delete the region")
        px, py = _points(xs, "x", where), _points(ys, "y", where)
        if not usable([*px, *py]):
            return mask
        cx_, cy_, _ = clip(px.tolist(), py.tolist())
        rr, cc = draw.polygon(np.asarray(cy_, float), np.asarray(cx_, float), shape)
    elif name == "ellipse":
        cx, cy, rx, ry = _numbers(attrs, ("cx", "cy", "rx", "ry"), where, name)
        (theta,) = _numbers({"theta": attrs.get("theta", 0.0) or 0.0}, ("theta",), where, name)
        if not usable([cx, cy, rx, ry, theta]) or rx <= 0 or ry <= 0:
            return mask
        (cx,), (cy,), (rx, ry) = clip([cx], [cy], (rx, ry))
        rr, cc = draw.ellipse(cy, cx, ry, rx, shape=shape, rotation=-theta)
    elif name == "circle":
        cx, cy, r = _numbers(attrs, ("cx", "cy", "r"), where, name)
        if not usable([cx, cy, r]) or r <= 0:
            return mask
        (cx,), (cy,), (r,) = clip([cx], [cy], (r,))
        rr, cc = draw.disk((cy, cx), r, shape=shape)
    elif name == "rect":
        values = _numbers(attrs, ("x", "y", "width", "height"), where, name)
        if not usable(values):
            return mask
        x, y, w, h = values
        clip([x, x + max(w, 1) - 1], [y, y + max(h, 1) - 1])  # warns only
        x0, x1 = (int(round(v)) for v in _clip([x, x + w], 0, shape[1]))
        y0, y1 = (int(round(v)) for v in _clip([y, y + h], 0, shape[0]))
        mask[y0:y1, x0:x1] = True
        return mask
    else:
        raise DataError(f"{where}: VIA region shape {name!r} is not supported (polygon, "
                        "polyline, ellipse, circle, rect); convert or delete the region")
    mask[rr, cc] = True
    return mask


def rasterise(regions: list[dict[str, Any]] | dict[str, Any], height: int, width: int, *,
              source: str = "") -> np.ndarray:
    """Union of the masks of ``regions`` (a VIA ``regions`` list, or VIA 1's dict of them)."""
    if isinstance(regions, dict):
        regions = list(regions.values())
    if not isinstance(regions, list):
        raise DataError(f"{source or 'annotation'}: VIA regions must be a list; "
                        "fix the annotation file")
    mask = np.zeros((int(height), int(width)), dtype=bool)
    for index, region in enumerate(regions):
        attrs = region.get("shape_attributes", region) if isinstance(region, dict) else None
        if not isinstance(attrs, dict):
            raise DataError(f"{source or 'annotation'}: a VIA region is not an object; "
                            "fix the annotation file")
        mask |= region_mask(attrs, height, width, source=source, region=index)
    return mask


def read_via(path: Path | str) -> dict[str, list[dict[str, Any]]]:
    """Map each file name of a VIA JSON export (or VIA project file) to its regions."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found; re-download the data") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid VIA JSON ({' '.join(str(exc).split())}); "
                        "re-download or re-export it") from exc
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise DataError(f"{path}: VIA JSON must be an object of images; re-export it")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DataError(f"{path}: entry {key!r} has no 'filename'; re-export the annotations")
        name = entry["filename"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: entry {key!r} has a 'filename' that is not a file name; "
                            "re-export the annotations")
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or Path(name).is_absolute() or ".." in parts or (
                len(name) > 1 and name[1] == ":"):
            raise DataError(f"{path}: entry {key!r} names {name!r}, a path outside the image "
                            "folder; VIA file names must be plain names beside the JSON "
                            "(fix or re-export the annotations)")
        regions = entry.get("regions") or []
        if isinstance(regions, dict):
            regions = list(regions.values())
        if not isinstance(regions, list):
            raise DataError(f"{path}: entry {key!r} has 'regions' that is not a list; "
                            "re-export the annotations")
        out.setdefault(name, []).extend(regions)
    return out
