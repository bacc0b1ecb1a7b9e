"""Torch machinery shared by the deep methods (imported lazily: ``import mribench`` stays light).

- :mod:`mribench.blocks.nn.data`: samples to tensors at a working size, :class:`SampleDataset`,
  seeded :func:`make_loader`, batch :class:`Augment` (joint image/mask), :func:`resize_back`.
- :mod:`mribench.blocks.nn.blocks`: ``ConvBlock``, ``Down``, ``Up``, ``OutConv``,
  ``ConvPoolClassifier`` (small sequential CNN), ``MLP``.
- :mod:`mribench.blocks.nn.losses`: ``BCELoss``, ``DiceLoss``, ``DiceBCELoss``, ``make_loss``,
  validation scores ``pooled_dice`` and ``binary_accuracy``.
- :mod:`mribench.blocks.nn.train`: ``fit_model`` (early stopping, checkpoints, resume, AMP on CUDA)
  by a ``TrainConfig`` (the training recipe), ``predict_batches``, ``seed_everything``,
  ``fingerprint``, ``TrainResult``.
- :mod:`mribench.blocks.nn.classify`: ``fit_classifier`` / ``predict_proba`` (image-level 0/1 nets).
"""
