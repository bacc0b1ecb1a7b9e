"""Trained pipelines outside the runner: save and load fitted methods, predict on a folder of
images, explain their decisions.

Layer: above :mod:`mribench.api`, :mod:`mribench.data` and :mod:`mribench.blocks`, below
:mod:`mribench.cli`; it never imports the runner, the results folder or the report.

- :mod:`mribench.model.state`: :func:`save_model` / :func:`load_model` (params JSON, torch
  ``state_dict`` files, skops for scikit-learn parts, npz arrays; no pickle);
- :mod:`mribench.model.schema`: a model folder is untrusted input: the schema of its JSON files,
  the attribute names it may set and the sizes it may allocate, checked before use;
- :mod:`mribench.model.predict`: ``bench predict`` (CSV, masks, overlays, HTML gallery);
- :mod:`mribench.model.explain`: ``bench explain`` (occlusion sensitivity, Grad-CAM, and
  how much of each map falls on the tumour).
"""

from mribench.model.state import ModelError, load_model, model_info, read_info, save_model

__all__ = ["ModelError", "load_model", "model_info", "read_info", "save_model"]
