"""Model selection on the validation slices: fit each candidate on train, keep the best on val.

The runner hands every method a fixed (train, val, test) split, so hyper-parameters are chosen
on ``val`` (never on ``test``) and the chosen model is the one fitted on ``train`` only, which
keeps ``val`` an honest held-out set for what the method learns next (thresholds, say).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score

from mribench.api.context import Context

__all__ = ["select_on_val"]


def select_on_val(make_model: Callable[..., Any], grid: Iterable[Mapping[str, Any]],
                  x_train: np.ndarray, y_train: np.ndarray,
                  x_val: np.ndarray | None, y_val: np.ndarray | None, *,
                  ctx: Context | None = None,
                  score: Callable[[np.ndarray, np.ndarray], float] = accuracy_score
                  ) -> tuple[dict[str, Any], Any]:
    """Fit ``make_model(**params)`` on train for each ``params`` of ``grid``; return the
    params with the best ``score(y_val, predicted)`` (ties: the first in grid order) and
    their fitted model.

    Without validation slices (``x_val`` None or empty) the first params are used. Each
    candidate's validation score is recorded with ``ctx.record`` (the method's history).
    """
    candidates = [dict(params) for params in grid]
    if not candidates:
        raise ValueError("select_on_val: empty grid")
    if x_val is None or y_val is None or len(y_val) == 0:
        return candidates[0], make_model(**candidates[0]).fit(x_train, y_train)
    best_params, best_model, best_score = candidates[0], None, -np.inf
    for params in candidates:
        model = make_model(**params).fit(x_train, y_train)
        value = float(score(y_val, model.predict(x_val)))
        if ctx is not None:
            ctx.record(**{k: (v if isinstance(v, (int, float)) else str(v))
                          for k, v in params.items()}, val_score=value)
        if value > best_score + 1e-12:
            best_params, best_model, best_score = params, model, value
    if ctx is not None:
        ctx.log("chosen on val", **{k: str(v) for k, v in best_params.items()},
                val_score=best_score)
    return best_params, best_model
