"""Data sets, one file each; installed as ``mribench.datasets``."""
