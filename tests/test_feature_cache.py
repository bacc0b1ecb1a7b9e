"""The run's feature cache at scale: chunked computation, disk-backed tables, storage dtypes,
earlier versions' ``.npz`` tables, damaged segments, sharing between caches."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from mribench.api.feature_cache import FeatureCache
from mribench.api.types import Sample
from mribench.atomic import atomic_save_npz


def _samples(n: int, size: int = 8) -> list[Sample]:
    rng = np.random.default_rng(3)
    return [Sample(id=f"s{i}", group="", label=i % 2,
                   image=rng.random((size, size)).astype(np.float32)) for i in range(n)]


class _Compute:
    """A feature function that records the size of each call: 3 features per image."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch):
        self.calls.append(len(batch))
        return np.stack([np.array([s.image.mean(), s.image.std(), s.image.max()],
                                  dtype=np.float64) for s in batch])


def _expected(samples):
    return _Compute()(samples)


def test_compute_is_called_in_chunks_and_gives_the_same_matrix(tmp_path):
    samples = _samples(23)
    compute = _Compute()
    cache = FeatureCache(tmp_path, chunk=5)
    got = cache.features("f", {"a": 1}, samples, compute)
    assert compute.calls == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(got, _expected(samples))
    assert got.dtype == np.float64
    # the missing rows only, in chunks too, and the rows come back in the order asked
    more = _samples(30)[::-1]
    again = cache.features("f", {"a": 1}, more, compute)
    assert compute.calls[5:] == [5, 2]
    np.testing.assert_array_equal(again, _expected(more))
    assert (cache.hits, cache.misses) == (23, 23 + 7)


def test_disk_table_is_shared_by_a_new_cache_and_holds_no_rows_in_memory(tmp_path):
    samples = _samples(12)
    FeatureCache(tmp_path, chunk=4).features("f", {"a": 1}, samples, _Compute())
    assert len(list(tmp_path.glob("*/*.npy"))) == 3  # one segment per chunk, nothing rewritten
    other = FeatureCache(tmp_path)  # another job, or a resumed run
    compute = _Compute()
    rows = other.rows("f", {"a": 1}, samples[::-1], compute)
    assert compute.calls == [] and other.hits == 12
    assert len(rows) == 12 and not hasattr(rows, "values")
    np.testing.assert_array_equal(rows[0], _expected(samples[-1:])[0])
    np.testing.assert_array_equal(rows.stack(2, 5), _expected(samples[::-1][2:5]))
    # a loader's worker receives the rows' places, not their values
    clone = pickle.loads(pickle.dumps(rows))
    np.testing.assert_array_equal(clone.stack(), _expected(samples[::-1]))
    assert len(pickle.dumps(rows)) < 2000


def test_float32_table_round_trips_shaped_and_is_another_table(tmp_path):
    samples = _samples(7)
    maps = lambda batch: np.stack([s.image.ravel() for s in batch])  # noqa: E731
    cache = FeatureCache(tmp_path, chunk=3)
    rows = cache.rows("maps", {}, samples, maps, dtype=np.float32).reshaped(8, 8)
    assert rows[3].dtype == np.float32 and rows[3].shape == (8, 8)
    np.testing.assert_array_equal(rows[3], samples[3].image)
    np.testing.assert_array_equal(rows.stack(), np.stack([s.image for s in samples]))
    again = FeatureCache(tmp_path).rows("maps", {}, samples, maps, dtype=np.float32)
    np.testing.assert_array_equal(again.stack(), np.stack([s.image.ravel() for s in samples]))
    empty = FeatureCache(tmp_path).rows("new", {}, [], maps, dtype=np.float32).reshaped(8, 8)
    assert len(empty) == 0 and empty.stack().shape == (0, 8, 8)
    wide = FeatureCache(tmp_path).features("maps", {}, samples, maps)  # float64: its own table
    assert wide.dtype == np.float64 and len([p for p in tmp_path.iterdir() if p.name.startswith('maps')]) == 2


def test_cache_without_folder_uses_a_private_folder_removed_with_it():
    samples = _samples(6)
    cache = FeatureCache(None, chunk=4)
    rows = cache.rows("f", {}, samples, _Compute())
    folder = cache._temp.path
    assert folder.is_dir()
    del cache
    np.testing.assert_array_equal(rows.stack(), _expected(samples))  # the rows keep it
    del rows
    assert not folder.exists()


def test_earlier_npz_table_is_read(tmp_path):
    samples = _samples(5)
    cache = FeatureCache(tmp_path)
    key = cache._table_key("f", {"a": 1})
    from mribench.api.feature_cache import _image_key

    old = _expected(samples[:3]) + 1.0  # an earlier run's rows (marked apart by the +1)
    atomic_save_npz(tmp_path / f"{key}.npz", keys=np.array([_image_key(s) for s in samples[:3]]),
                    values=old)
    compute = _Compute()
    got = cache.features("f", {"a": 1}, samples, compute)
    assert compute.calls == [2]
    np.testing.assert_array_equal(got[:3], old)
    np.testing.assert_array_equal(got[3:], _expected(samples[3:]))


def test_damaged_npz_and_segment_are_rebuilt_once_with_a_warning(tmp_path, caplog):
    samples = _samples(4)
    key = FeatureCache._table_key("f", {})
    (tmp_path / f"{key}.npz").write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="mribench"):
        first = FeatureCache(tmp_path).features("f", {}, samples, _Compute())
        np.testing.assert_array_equal(first, _expected(samples))
        (segment,) = tmp_path.glob("*/*.keys")
        segment.write_text("not-a-key\n")  # keys that do not match the rows
        compute = _Compute()
        again = FeatureCache(tmp_path).features("f", {}, samples, compute)
        FeatureCache(tmp_path).features("f", {}, samples, compute)
    np.testing.assert_array_equal(again, first)
    assert compute.calls == [4]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and f"{key}.npz" in warned[0]
    assert str(segment.with_suffix(".npy")) in warned[1]


def test_wrong_shape_from_the_feature_function_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="returned shape"):
        FeatureCache(tmp_path).features("f", {}, _samples(3), lambda b: np.zeros((1, 2)))
