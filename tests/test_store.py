"""The data cache's sample store (issue 12, item 3): slices on disk, read one at a time.

A stored sample must give back exactly the arrays it was given (uint8 storage only when that
is exact), hold no pixels in memory, survive pickling into a worker, and a damaged store must
be rebuilt, never trusted."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mribench.api.types import Sample
from mribench.data.load import load_dataset
from mribench.data.store import SampleStore, StoreWriter


def _samples(eight_bit: bool, n: int = 6, size: int = 24) -> list[Sample]:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (n, size, size)).astype(np.float32) / np.float32(255.0)
    if not eight_bit:
        images = rng.random((n, size, size)).astype(np.float32)
    return [Sample(id=f"s{i}", group=f"g{i // 2}", label=i % 2, image=images[i],
                   mask=(images[i] > 0.5) if i % 2 else None, source="x",
                   original_size=(30 + i, 40)) for i in range(n)]


def _write(folder: Path, samples: list[Sample]) -> SampleStore:
    writer = StoreWriter(folder)
    for s in samples:
        writer.add(s)
    return writer.close()


def _same(got: list[Sample], want: list[Sample]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.id, g.group, g.label, g.source, g.original_size) == (
            w.id, w.group, w.label, w.source, w.original_size)
        assert g.image.dtype == np.float32 and np.array_equal(g.image, w.image)
        assert g.has_mask == (w.mask is not None) and (g.mask is None) == (w.mask is None)
        if w.mask is not None:
            assert g.mask.dtype == bool and np.array_equal(g.mask, w.mask)


@pytest.mark.parametrize("eight_bit", [True, False])
def test_store_gives_back_the_exact_samples(tmp_path: Path, eight_bit: bool) -> None:
    samples = _samples(eight_bit)
    store = _write(tmp_path / "s", samples)
    assert store.dtype == (np.uint8 if eight_bit else np.float32)
    size = (tmp_path / "s" / "images.bin").stat().st_size
    assert size == 6 * 24 * 24 * (1 if eight_bit else 4)
    assert (tmp_path / "s" / "masks.bin").stat().st_size == 3 * 24 * 3  # 3 masks, bit-packed
    _same(SampleStore(tmp_path / "s").samples(), samples)
    # the files are plain arrays any tool can map
    mapped = np.memmap(tmp_path / "s" / "images.bin", dtype=store.dtype, mode="r",
                       shape=(6, 24, 24))
    scale = np.float32(255.0) if eight_bit else np.float32(1.0)
    assert np.array_equal(mapped[2].astype(np.float32) / scale, samples[2].image)


def test_a_later_image_that_is_not_8_bit_turns_the_store_float32(tmp_path: Path) -> None:
    samples = _samples(True)
    samples[4].image = samples[4].image + np.float32(1e-4)  # no longer k/255
    store = _write(tmp_path / "s", samples)
    assert store.dtype == np.float32
    _same(store.samples(), samples)


def test_stored_samples_hold_no_pixels_and_read_fresh_arrays(tmp_path: Path) -> None:
    stored = _write(tmp_path / "s", _samples(True)).samples()
    s = stored[1]
    assert not [v for v in vars(s).values() if isinstance(v, np.ndarray)]
    first, second = s.image, s.image
    assert first is not second and np.array_equal(first, second)
    first[:] = 0  # changing what was read changes nothing stored
    assert s.image.any()
    assert s.shape == (24, 24) and s.mask_or_empty() is not None
    assert stored[0].mask is None and stored[0].mask_or_empty().shape == (24, 24)
    # assigning keeps the assigned array; replace() gives an ordinary sample
    s.mask = None
    assert s.mask is None and not s.has_mask
    other = dataclasses.replace(stored[2], label=1)
    assert other.label == 1 and np.array_equal(other.image, stored[2].image)


def test_stored_samples_pickle_into_another_process_by_reference(tmp_path: Path) -> None:
    stored = _write(tmp_path / "s", _samples(False)).samples()
    blob = pickle.dumps(stored)
    assert len(blob) < 6 * 24 * 24 * 4  # the pixels are not in the pickle
    again = pickle.loads(blob)
    _same(again, stored)
    pid = os.fork()
    if pid == 0:  # a forked child opens its own descriptor and reads the same pixels
        os._exit(0 if np.array_equal(stored[3].image, again[3].image) else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_damaged_store_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "s", _samples(True))
    images = tmp_path / "s" / "images.bin"
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(ValueError, match="images.bin holds 100 bytes"):
        SampleStore(tmp_path / "s")


def test_an_aborted_write_leaves_no_store(tmp_path: Path) -> None:
    def broken():
        yield from _samples(True)[:3]
        raise RuntimeError("decoder crashed")

    writer = StoreWriter(tmp_path / "s")
    with pytest.raises(RuntimeError):
        for s in broken():
            writer.add(s)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_load_dataset_streams_a_generated_set_and_reads_it_back(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path))
    _, fresh = load_dataset("synthetic[n=40]", image_size=32, use_cache=False)
    _, cold = load_dataset("synthetic[n=40]", image_size=32)
    _, warm = load_dataset("synthetic[n=40]", image_size=32)
    _same(cold, fresh)
    _same(warm, fresh)
    assert all(vars(s)["_reader"] is not None for s in warm)
    (entry,) = (tmp_path / "datasets").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["images.bin", "masks.bin", "meta.json"]


def test_reads_without_positional_io_give_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    samples = _samples(False)
    stored = _write(tmp_path / "s", samples).samples()
    monkeypatch.delattr(os, "pread")  # as on Windows
    _same(stored, samples)


def test_a_cache_that_cannot_be_written_falls_back_to_memory(tmp_path: Path,
                                                             monkeypatch) -> None:
    import errno

    from mribench.data import store

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path))
    _, fresh = load_dataset("synthetic[n=20]", image_size=32, use_cache=False)

    def full(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.StoreWriter, "add", full)
    with pytest.warns(UserWarning, match="cannot write the data cache .*No space left"):
        _, got = load_dataset("synthetic[n=20]", image_size=32)
    _same(got, fresh)
    assert not list((tmp_path / "datasets").iterdir())  # no partial store left


def test_an_error_of_the_data_itself_is_not_blamed_on_the_cache(tmp_path: Path,
                                                                monkeypatch) -> None:
    import warnings

    from mribench.datasets.synthetic import Synthetic

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path))
    calls = []

    def broken(self):
        calls.append(1)
        yield from _samples(True)[:2]
        raise PermissionError(13, "Permission denied", "scan_0003.png")

    monkeypatch.setattr(Synthetic, "iter_load", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cannot write the data cache" warning
        with pytest.raises(PermissionError, match="scan_0003.png"):
            load_dataset("synthetic[n=20]", image_size=24)
    assert calls == [1]  # read once, not retried in memory
    assert not list((tmp_path / "datasets").iterdir())
