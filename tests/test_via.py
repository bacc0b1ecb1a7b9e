"""VIA regions -> masks: each shape against hand-computed pixels, and Br35H's real annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mribench.api.errors import DataError
from mribench.data.via import rasterise, read_via, region_mask


def _pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}


def test_polygon_square_includes_its_outline():
    attrs = {"name": "polygon", "all_points_x": [1, 5, 5, 1], "all_points_y": [1, 1, 5, 5]}
    mask = region_mask(attrs, 8, 8)
    assert _pixels(mask) == {(r, c) for r in range(1, 6) for c in range(1, 6)}


def test_polygon_triangle():
    # Right triangle with corners (x, y) = (1, 1), (1, 5), (5, 5): row r holds columns 1..r.
    attrs = {"name": "polygon", "all_points_x": [1, 1, 5], "all_points_y": [1, 5, 5]}
    mask = region_mask(attrs, 8, 8)
    assert _pixels(mask) == {(r, c) for r in range(1, 6) for c in range(1, r + 1)}


def test_polygon_is_clipped_to_the_image():
    attrs = {"name": "polygon", "all_points_x": [-3, 2, 2, -3], "all_points_y": [-3, -3, 1, 1]}
    assert _pixels(region_mask(attrs, 4, 4)) == {(r, c) for r in range(2) for c in range(3)}


def test_ellipse_axis_aligned_strictly_inside():
    # ((r-4)/2)^2 + ((c-4)/3)^2 < 1: rows 3..5, columns 2..6 (|c-4| < 3 and < 2.598).
    attrs = {"name": "ellipse", "cx": 4, "cy": 4, "rx": 3, "ry": 2, "theta": 0}
    assert _pixels(region_mask(attrs, 9, 9)) == {(r, c) for r in (3, 4, 5) for c in range(2, 7)}


def test_ellipse_theta_turns_clockwise_on_screen():
    # VIA draws on a canvas whose y axis points down: theta = +pi/4 lays the long axis from
    # top-left to bottom-right (row and column grow together).
    attrs = {"name": "ellipse", "cx": 10, "cy": 10, "rx": 6, "ry": 1.5, "theta": np.pi / 4}
    mask = region_mask(attrs, 21, 21)
    assert all(mask[10 + k, 10 + k] and mask[10 - k, 10 - k] for k in range(4))
    assert not any(mask[10 + k, 10 - k] or mask[10 - k, 10 + k] for k in range(2, 5))


def test_ellipse_theta_pi_is_no_rotation():
    base = {"name": "ellipse", "cx": 10.3, "cy": 8.7, "rx": 6.2, "ry": 3.1}
    assert np.array_equal(region_mask({**base, "theta": 0.0}, 20, 24),
                          region_mask({**base, "theta": np.pi}, 20, 24))


def test_circle_strictly_inside():
    attrs = {"name": "circle", "cx": 4, "cy": 4, "r": 2}
    assert _pixels(region_mask(attrs, 9, 9)) == {(r, c) for r in (3, 4, 5) for c in (3, 4, 5)}


def test_rect():
    attrs = {"name": "rect", "x": 2, "y": 1, "width": 3, "height": 2}
    assert _pixels(region_mask(attrs, 6, 6)) == {(r, c) for r in (1, 2) for c in (2, 3, 4)}


def test_regions_union_and_via1_dict():
    regions = [
        {"shape_attributes": {"name": "circle", "cx": 2, "cy": 2, "r": 1}},
        {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 2, "height": 2}},
    ]
    mask = rasterise(regions, 8, 8)
    assert _pixels(mask) == {(2, 2), (5, 5), (5, 6), (6, 5), (6, 6)}
    assert np.array_equal(rasterise({"0": regions[0], "1": regions[1]}, 8, 8), mask)
    assert not rasterise([], 8, 8).any()


@pytest.mark.parametrize("attrs, words", [
    ({"name": "point", "cx": 1, "cy": 1}, "not supported"),
    ({"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}, "at least 3"),
    ({"name": "ellipse", "cx": 1, "cy": 1, "rx": 2}, "ry"),
])
def test_bad_regions_are_data_errors(attrs, words):
    with pytest.raises(DataError, match=words) as info:
        region_mask(attrs, 8, 8, source="y1.jpg")
    assert "y1.jpg" in str(info.value) and "\n" not in str(info.value)


def test_read_via_export_and_project(tmp_path):
    entry = {"filename": "y1.jpg", "size": 10, "regions": [
        {"shape_attributes": {"name": "circle", "cx": 1, "cy": 1, "r": 1}}]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"y1.jpg10": entry}))
    project = tmp_path / "project.json"
    project.write_text(json.dumps({"_via_settings": {}, "_via_img_metadata": {"y1.jpg10": entry}}))
    assert read_via(export) == read_via(project) == {"y1.jpg": entry["regions"]}
    with pytest.raises(DataError, match="missing.json"):
        read_via(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        read_via(tmp_path / "bad.json")


@pytest.mark.br35h
def test_br35h_annotations_rasterise_to_the_published_statistics(br35h_dir):
    fractions, shapes = [], {}
    for part in ("TRAIN", "VAL", "TEST"):
        for filename, regions in read_via(
                br35h_dir / "Br35H-Mask-RCNN" / part / f"annotations_{part.lower()}.json").items():
            with Image.open(br35h_dir / "yes" / filename) as img:
                width, height = img.size
            fractions.append(rasterise(regions, height, width, source=filename).mean())
            for r in regions:
                name = r["shape_attributes"]["name"]
                shapes[name] = shapes.get(name, 0) + 1
    assert len(fractions) == 801
    assert shapes == {"polygon": 666, "ellipse": 257, "circle": 8}
    assert min(fractions) > 0.001 and max(fractions) < 0.3
    assert 0.04 < float(np.median(fractions)) < 0.06  # SOURCE.md: median 4.9%
