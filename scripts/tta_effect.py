"""Accuracy effect of test-time augmentation on a held-out partition.

    python scripts/tta_effect.py examples/configs/dubai.toml xlandcover/data/demo-dubai.xlc

Scores the model on the configuration's test partition without TTA, with the four flips and
with the eight dihedral transforms (D4), and prints JSON with mIoU, accuracy and time.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import xlandcover as xlc
from xlandcover.training import load_config


def main() -> None:
    warnings.simplefilter("ignore")
    config, model = sys.argv[1], sys.argv[2]
    splits = load_config(config).splits()
    results = {}
    for tta in (False, "flips", "d4"):
        t0 = time.perf_counter()
        report = xlc.evaluate(model=model, partition=splits.test, tta=tta)
        results[str(tta)] = {**report.summary(), "seconds": round(time.perf_counter() - t0, 1)}
        print(tta, f"mIoU {report.miou:.4f}", f"acc {report.pixel_accuracy:.4f}", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
