"""The detector in the form the Numenta Anomaly Benchmark scores: `score(timestamps, values)`.

NAB's single series is one node's one metric, without context; the product runs the very same
code (`analytics.detector.score_rows`, through `analytics.anomaly`) per node and metric, with the
site's neighbours and rain as context. This module only adapts the call.
"""

from __future__ import annotations

import numpy as np

from analytics import detector


def score(timestamps, values) -> np.ndarray:
    """Anomaly score in [0, 1] for each row, causal (`analytics.detector.score`).

    Parameters
    ----------
    timestamps : array_like of datetime64
    values : array_like of float
        NaN is carried forward from the last value.
    """
    return detector.score(timestamps, values)
