"""The split layer: manifests (read, write, hash), the manifest a run uses, and the shortcut
audit of a split (what metadata alone predicts)."""
