"""DWT features, PCA and a deep fully connected network (Mohsen et al. 2018).

Reference: H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty, A.-B. M. Salem,
"Classification using deep learning neural networks for brain tumors", Future Computing and
Informatics Journal 3(1):68-71, 2018, doi:10.1016/j.fcij.2017.12.001.

Recipe: each slice (256 x 256 in the paper) is decomposed by a 3-level Haar discrete wavelet
transform; the approximation coefficients of the last level (32 x 32 = 1,024 values) are the
features; principal component analysis reduces them; a deep neural network (fully connected
layers) classifies the reduced vector.

Input: grayscale slices (resized to ``image_size``). Output: a label per slice and
``P(tumour)`` as its score.

Here: the DWT features come from :mod:`mribench.blocks.features.wavelet` through the run's feature
cache (computed once per image, a chunk of slices at a time, and shared with any method
asking for the same transform);
they are standardised and projected on ``pca_components`` principal components fitted on
the training slices; the network (``hidden`` widths, ReLU, dropout) is trained with binary
cross-entropy and Adam through :func:`mribench.blocks.nn.classify.fit_classifier` (early stopping on
validation accuracy, the best epoch kept), on CUDA when present.

Differences from the paper:

- two classes (tumour / no tumour) instead of the paper's four (normal, glioblastoma,
  sarcoma, metastatic bronchogenic carcinoma);
- no fuzzy c-means segmentation before the transform (the paper segments the slices first);
  the whole slice is transformed;
- the paper's network sizes and training schedule are not reproduced exactly; the hidden
  widths, dropout and number of components are parameters (defaults 256-128-64, 0.5, 100);
- the features are standardised before PCA (the coefficients' scales differ by image);
- ``quick`` uses 64 components and fewer epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from mribench.api import (
    POSITIVE_INTS,
    Check,
    Context,
    ExportRecipe,
    Interval,
    Method,
    MethodParams,
    OneOf,
    Prediction,
    Sample,
)
from mribench.api.export import label_step, load_step, resize_step, sigmoid_step
from mribench.blocks.features.wavelet import (
    FEATURE_KINDS,
    MODE,
    check_levels,
    dwt_matrix,
    is_discrete_wavelet,
)
from mribench.blocks.nn.blocks import MLP
from mribench.blocks.nn.classify import fit_classifier, predict_proba
from mribench.blocks.nn.data import images_to_tensor
from mribench.blocks.nn.train import (
    TrainConfig,
    TrainParams,
    fingerprint,
    seed_everything,
    torch_threads,
)


@dataclass(frozen=True)
class Params(TrainParams):
    """Hyper-parameters of ``dwt-dnn`` (defaults: the ``paper`` profile); the training ones are
    checked by :class:`mribench.blocks.nn.train.TrainParams`'s rules."""

    owner: ClassVar[str] = "dwt-dnn"
    constraints: ClassVar[dict[str, Any]] = {
        "image_size": Interval(8, 4096, integer=True),
        "wavelet": Check(is_discrete_wavelet,
                         "a discrete wavelet PyWavelets knows (e.g. 'haar', 'db2', 'sym4')"),
        "levels": Interval(1, 12, integer=True),
        "features": OneOf(FEATURE_KINDS),
        "pca_components": Interval(1, None, integer=True),
        "hidden": POSITIVE_INTS,
    }

    image_size: int = 256
    wavelet: str = "haar"
    levels: int = 3
    features: str = "approx"
    pca_components: int = 100
    hidden: tuple[int, ...] = (256, 128, 64)
    epochs: int = 100
    weight_decay: float = 1e-4
    patience: int | None = 15

    def validate(self) -> None:
        super().validate()
        # the image must be large enough for the decomposition: one line naming the fix
        check_levels(self.levels, (self.image_size, self.image_size), self.wavelet,
                     owner=self.owner)


class DWTDNN(Method):
    """Mohsen et al. 2018: 3-level Haar DWT -> PCA -> fully connected network."""

    name: ClassVar[str] = "dwt-dnn"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "Mohsen, El-Dahshan, El-Horbaty, Salem, Classification using deep learning neural "
        "networks for brain tumors, Future Computing and Informatics Journal 3(1):68-71, 2018, "
        "doi:10.1016/j.fcij.2017.12.001")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"pca_components": 64, "epochs": 60, "patience": 10},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch", "pywt")

    def _features(self, samples: Sequence[Sample], ctx: Context) -> np.ndarray:
        p = self.params
        key = {"image_size": p.image_size, "wavelet": p.wavelet, "levels": p.levels,
               "kind": p.features}

        def compute(batch: Sequence[Sample]) -> np.ndarray:
            images = images_to_tensor(batch, p.image_size)[:, 0].numpy()
            return dwt_matrix(list(images), p.wavelet, p.levels, kind=p.features)

        return ctx.cache.features("dwt", key, list(samples), compute)

    def _reduce(self, features: np.ndarray) -> torch.Tensor:
        z = self.pca_.transform(self.scaler_.transform(features))
        return torch.as_tensor(z / self.scale_, dtype=torch.float32)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> DWTDNN:
        p = self.params
        train = [s for s in train if s.label in (0, 1)]
        val = [s for s in val if s.label in (0, 1)]
        x_train = self._features(train, ctx)
        self.scaler_ = StandardScaler().fit(x_train)
        n_comp = min(p.pca_components, *x_train.shape)
        # standardised, then centred, in place: one (n, 1024) float64 matrix beside the SVD's
        # own (35,000 slices: 287 MB each), not three; the same arithmetic as with copies
        self.pca_ = PCA(n_components=n_comp, svd_solver="full", random_state=ctx.seed,
                        copy=False).fit(self.scaler_.transform(x_train, copy=False))
        self.pca_.set_params(copy=True)  # the estimator saved is the one fitted with copies
        del x_train
        # one common scale so the first component's values are of order 1
        self.scale_ = float(np.sqrt(self.pca_.explained_variance_[0])) or 1.0
        ctx.log("pca", components=n_comp,
                explained=float(self.pca_.explained_variance_ratio_.sum()))
        z_train = self._reduce(self._features(train, ctx))  # read again from the cache
        z_val = self._reduce(self._features(val, ctx)) if val else None
        seed_everything(ctx.seed)
        self.model_ = self.build_network()
        recipe = TrainConfig(epochs=p.epochs, lr=p.lr, weight_decay=p.weight_decay,
                             patience=p.patience)
        with torch_threads(1 if ctx.device == "cpu" else None):  # a tiny network
            self.train_result_ = fit_classifier(
                self.model_, z_train, [s.label for s in train], z_val,
                [s.label for s in val], ctx, recipe, batch_size=p.batch_size,
                fingerprint=fingerprint(p.digest(), [s.id for s in train], ctx.seed))
        ctx.log("trained", best_epoch=self.train_result_.best_epoch,
                val_accuracy=self.train_result_.best_score)
        return self

    def build_network(self, index: int = 0) -> MLP:
        """The untrained network of ``fit``, sized by the fitted PCA (also how a saved model
        is rebuilt)."""
        p = self.params
        return MLP(int(self.pca_.n_components_), tuple(p.hidden), dropout=p.dropout)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: the fully connected network in the graph; the wavelet features,
        their standardisation and the PCA projection before it (arrays in preprocess.npz)."""
        p = self.params
        dwt = {"step": "dwt_features", "wavelet": p.wavelet, "levels": p.levels,
               "mode": MODE, "features": p.features,
               "how": "pywt.wavedec2(slice as float64, wavelet, mode=mode, level=levels); "
                      "'approx': the last level's approximation coefficients flattened "
                      "row-major; 'stats': per band (approximation, then each level's "
                      "details) mean of squares, mean and standard deviation",
               "code": "mribench.blocks.features.wavelet.dwt_matrix"}
        project = {"step": "standardise_and_project",
                   "arrays": ["scaler_mean", "scaler_scale", "pca_mean", "pca_components"],
                   "pca_scale": float(self.scale_),
                   "how": "z = (((x - scaler_mean) / scaler_scale - pca_mean) @ "
                          "pca_components.T) / pca_scale in float64, then float32"}
        arrays = {"scaler_mean": self.scaler_.mean_, "scaler_scale": self.scaler_.scale_,
                  "pca_mean": self.pca_.mean_, "pca_components": self.pca_.components_}
        return ExportRecipe(
            inputs=((int(self.pca_.n_components_),),), output="tumour logit per slice, (n, 1)",
            preprocess=(load_step(), resize_step(p.image_size), dwt, project),
            postprocess=(sigmoid_step(), label_step()), arrays=arrays,
            outside_graph=("resizing", "the wavelet transform", "standardisation and PCA "
                           "(arrays in preprocess.npz)", "the sigmoid and the 0.5 threshold"))

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        z = self._reduce(self._features(samples, ctx))
        with torch_threads(1 if ctx.device == "cpu" else None):
            scores = predict_proba(self.model_, z, ctx)
        return Prediction(ids=[s.id for s in samples], labels=(scores >= 0.5).astype(int),
                          scores=scores)
