"""What a plugin imports: the data that flows (Sample, Prediction), the contracts (Method,
SegmentationMethod, Dataset), parameters and their constraints, the run context, the feature
cache, thresholds, the errors that reach the user as one line, pixel overlap (Dice/IoU from
counts, :mod:`mribench.api.overlap`) and seeding (:func:`seed_everything`).

``from mribench.api import Method, Sample, Prediction, Context`` is all a method needs from the
engine besides the shared algorithms of :mod:`mribench.blocks`.
"""

from mribench.api.context import Context
from mribench.api.dataset import DEFAULT_IMAGE_SIZE, Dataset
from mribench.api.errors import DataError, MethodFailed, MribenchError, ParamError
from mribench.api.export import ExportRecipe
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import PROFILES, Method, SegmentationMethod
from mribench.api.overlap import dice_from_counts, iou_from_counts, mask_counts, pooled_dice
from mribench.api.params import (
    FLAG,
    POSITIVE_INTS,
    Check,
    Interval,
    MethodParams,
    OneOf,
    OrNone,
    parse_overrides,
)
from mribench.api.seeding import seed_everything
from mribench.api.thresholds import AreaThreshold, ScoreThreshold
from mribench.api.types import TASKS, UNLABELLED, Prediction, Sample, Task

__all__ = [
    "DEFAULT_IMAGE_SIZE", "FLAG", "POSITIVE_INTS", "PROFILES", "TASKS", "UNLABELLED",
    "AreaThreshold", "Check", "Context", "DataError", "Dataset", "ExportRecipe", "FeatureCache",
    "Interval",
    "Method", "MethodFailed", "MethodParams", "MribenchError", "OneOf", "OrNone", "ParamError",
    "Prediction", "Sample", "ScoreThreshold", "SegmentationMethod", "Task", "dice_from_counts",
    "iou_from_counts", "mask_counts", "parse_overrides", "pooled_dice", "seed_everything",
]
