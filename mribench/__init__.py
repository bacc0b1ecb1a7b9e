"""mribench: reproduce and rank the brain-MRI tumour pipelines of the literature.

The engine lives here; the literature lives in ``mribench.methods`` (one file per
pipeline) and ``mribench.datasets`` (one file per data set).
"""

from importlib.metadata import PackageNotFoundError, version

from mribench.cpu_kernels import pin_process

# before numpy or torch choose their kernels (once per process): see mribench.cpu_kernels
pin_process()

try:
    __version__ = version("mribench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
