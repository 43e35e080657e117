"""Evaluation: out-of-core confusion matrices and scores, class areas, calibration, and
accuracy and area from a probability sample (design-based estimators), and a gallery of
predictions next to the reference."""

from ._accuracy import AreaAccuracy, assess_error_matrix, assess_sample
from ._areas import class_areas
from ._calibration import (
    Calibration,
    ReliabilityCounts,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability_table,
    softmax,
)
from ._evaluate import evaluate, evaluate_calibration, score_map
from ._gallery import save_results, show_results
from ._metrics import Report, confusion_matrix
from ._sampling import allocate, read_sample, sample_design, sample_size, write_sample

__all__ = [
    "AreaAccuracy",
    "Calibration",
    "ReliabilityCounts",
    "Report",
    "allocate",
    "assess_error_matrix",
    "assess_sample",
    "class_areas",
    "confusion_matrix",
    "evaluate",
    "evaluate_calibration",
    "expected_calibration_error",
    "fit_temperature",
    "plot_reliability",
    "read_sample",
    "reliability_table",
    "sample_design",
    "sample_size",
    "save_results",
    "score_map",
    "show_results",
    "softmax",
    "write_sample",
]
