"""Corrupted copies of an evaluation set, made once per (image, artefact, severity) and cached.

:func:`corrupted_samples` returns the samples of a set with each image corrupted by an
artefact at a severity (:func:`mribench.blocks.artefacts.corrupt`, seeded per image), and
everything else as it was: id, group, label, source and the mask, untouched. The corrupted
images are written once into a sample store (:mod:`mribench.data.store`, the data cache's
format) in ``folder``, which the caller names (the run's ``.cache``: every job of the run,
in any process, reads the same pixels); a store another process finished first is used as it
is. Within a process the stores opened are kept, so the jobs of a run open each once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from mribench.api.types import Sample
from mribench.blocks.artefacts import corrupt
from mribench.data.store import SampleStore, StoreWriter

__all__ = ["corrupted_samples", "ids_digest"]

#: Stores opened in this process, by folder.
_OPEN: dict[Path, SampleStore] = {}


def ids_digest(samples: Sequence[Sample]) -> str:
    """A short digest of the samples' ids, in order: names the store of exactly this set."""
    h = hashlib.sha256()
    for sample in samples:
        h.update(sample.id.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:12]


def _write(samples: Sequence[Sample], artefact: str, severity: int, folder: Path
           ) -> SampleStore:
    writer = StoreWriter(folder)
    try:
        for s in samples:
            writer.add(Sample(id=s.id, group=s.group, label=s.label, mask=s.mask,
                              image=corrupt(s.image, artefact, severity, s.id),
                              source=s.source, original_size=s.original_size))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def corrupted_samples(samples: Sequence[Sample], artefact: str, severity: int,
                      folder: Path) -> list[Sample]:
    """``samples`` with ``artefact`` at ``severity`` (their masks and labels unchanged), read
    from the store in ``folder``, which is made first when absent or damaged."""
    folder = Path(folder)
    store = _OPEN.get(folder)
    if store is None:
        try:
            store = SampleStore(folder)
            if [r["id"] for r in store.records] != [s.id for s in samples]:
                raise ValueError("the store holds other samples")
        except (OSError, ValueError):
            if folder.exists():
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            store = _write(samples, artefact, severity, folder)
        _OPEN[folder] = store
    return store.samples()
