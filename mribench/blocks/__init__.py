"""Shared algorithms the plugins compose, with no knowledge of any plugin, of the runner or of
the metrics: pre-processing, resizing, region growing, fuzzy c-means, dense CRF, CLONALG,
model selection on val, handcrafted features (:mod:`.features`) and torch machinery
(:mod:`.nn`)."""
