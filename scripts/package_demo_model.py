"""Score a trained model on its held-out partition and ship it as an embedded demo model.

    python scripts/package_demo_model.py examples/configs/dubai.toml runs/dubai/best.xlc \
        xlandcover/data/demo-dubai.xlc --description "..." [--baseline]

The package's metadata gains ``extra["provenance"]`` (data, split, training command) and
``extra["test_scores"]`` (per-class IoU, mIoU, pixel accuracy, kappa on the test partition, and
the random-forest baseline's when asked), so the file carries its own evidence.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import xlandcover as xlc
from xlandcover.model import with_metadata
from xlandcover.training import load_config, random_forest_baseline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--description", required=True)
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--eval-stride", type=int, default=2, help="baseline: score every n-th px")
    args = p.parse_args()
    warnings.simplefilter("ignore")

    cfg = load_config(args.config)
    splits = cfg.splits()
    package = xlc.load_model(args.model)
    report = xlc.evaluate(model=package, partition=splits.test)
    print(report)
    scores = {"model": report.summary()}
    if args.baseline:
        base = random_forest_baseline(splits, eval_stride=args.eval_stride)
        print("random forest, per pixel:\n", base.report)
        scores["random_forest_per_pixel"] = {
            **base.report.summary(),
            "eval_stride": args.eval_stride,
            "train_pixels": base.n_train_pixels,
        }
    extra = dict(package.metadata.extra)
    extra["provenance"] = {
        "config": str(args.config),
        "data": cfg.raw["data"],
        "split": splits.assignment.to_dict("list"),
        "trained_by": f"xlandcover train {args.config}",
    }
    extra["test_scores"] = scores
    with_metadata(package, args.out, description=args.description, extra=extra, overwrite=True)
    print(json.dumps(scores, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
