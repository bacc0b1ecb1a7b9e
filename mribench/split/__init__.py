"""The split layer: manifests (read, write, hash), the manifest a run uses, the shortcut
audit of a split (what metadata alone predicts), and the data audit of a data set's committed
manifests (:mod:`mribench.split.audit`, behind ``bench data audit``)."""
