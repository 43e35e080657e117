"""Training: chips, spatial splits, augmentation, losses, the training recipe and
:func:`train`, the per-pixel random-forest baseline, chip export, and TOML run configurations."""

from ._augment import AugmentConfig
from ._baseline import BaselineResult, forest_baseline, random_forest_baseline
from ._chips import Chips, ChipSource, distinct_counts, sample_chips
from ._config import RunConfig, check_config, load_config
from ._export import INDEX_NAME, export_chips
from ._losses import LOSSES, make_loss, median_frequency_weights, register_loss
from ._recipe import FIXED_DEFAULTS, DataProfile, auto_chip_size, auto_settings
from ._splits import (
    PARTITIONS,
    Splits,
    held_out,
    labelled_bounds,
    recommend_block_size,
    spatial_split,
)
from ._train import (
    SCHEDULES,
    TrainConfig,
    TrainResult,
    band_statistics,
    register_schedule,
    train,
)

__all__ = [
    "FIXED_DEFAULTS",
    "INDEX_NAME",
    "LOSSES",
    "PARTITIONS",
    "SCHEDULES",
    "AugmentConfig",
    "BaselineResult",
    "ChipSource",
    "Chips",
    "DataProfile",
    "RunConfig",
    "Splits",
    "TrainConfig",
    "TrainResult",
    "auto_chip_size",
    "auto_settings",
    "band_statistics",
    "check_config",
    "distinct_counts",
    "export_chips",
    "forest_baseline",
    "held_out",
    "labelled_bounds",
    "load_config",
    "make_loss",
    "median_frequency_weights",
    "random_forest_baseline",
    "recommend_block_size",
    "register_loss",
    "register_schedule",
    "sample_chips",
    "spatial_split",
    "train",
]
