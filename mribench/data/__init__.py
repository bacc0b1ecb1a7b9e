"""The data layer: files to samples. Image and mask io, VIA annotations, near-duplicate
groups, the synthetic phantom, and :func:`~mribench.data.load.load_dataset` (a ``--dataset``
spec to samples, through the on-disk data cache)."""
