"""Literature pipelines, one file each; installed as ``mribench.methods``."""
