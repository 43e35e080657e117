"""Train the Zion demo model shipped as ``xlandcover/data/demo-zion.xlc``, with the recipe.

It uses the library's documented workflow (``sample_chips(size="auto")``, ``spatial_split``,
``train(recipe="auto", max_minutes=...)``) on the Zion Landsat 8 scene and NLCD 2011
(``../shared/data/zion-landsat8-nlcd``), holding out the demo crop
(``xlandcover/data/zion-landsat8-demo.tif``) plus a buffer: there the image is set to nodata and
the labels to unlabelled, so no training or validation chip sees the crop's pixels. The rest of
the scene is split by 7.68 km blocks into train and validation. The model is then scored on
the demo crop with the seamless predictor, and the scores and provenance are stored in the
package (``extra["metrics_demo_crop"]``, ``extra["provenance"]``).

    .venv/bin/python scripts/make_demo_model.py                 # 20 minutes of training
    .venv/bin/python scripts/make_demo_model.py --minutes 2 --out /tmp/demo.xlc
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds

import xlandcover as xlc
from xlandcover.model import with_metadata

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "zion-landsat8-nlcd"
DEMO_CROP = ROOT / "xlandcover" / "data" / "zion-landsat8-demo.tif"
DEMO_LABELS = ROOT / "xlandcover" / "data" / "zion-landsat8-nlcd-demo.tif"
OUT = ROOT / "xlandcover" / "data" / "demo-zion.xlc"
NAMES = ["water", "developed", "barren", "forest", "shrubland", "herbaceous", "cultivated",
         "wetlands"]  # fmt: skip
COLORS = ["#476ba1", "#e1cdce", "#b3afa4", "#6ca966", "#ccba7d", "#e3e3c2", "#dcd93d",
          "#bad9eb"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=20.0, help="training budget")
    p.add_argument("--buffer", type=int, default=64, help="held-out pixels around the crop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # one line per epoch

    scene = args.data_dir / "landsat8_b2345_stack.tif"
    bands = ["blue", "green", "red", "nir"]
    img = xlc.open_raster(scene, chunks=None, bands=bands)
    lab = xlc.open_raster(args.data_dir / "nlcd_generalized_on_landsat_grid.tif", chunks=None)
    with rasterio.open(scene) as s, rasterio.open(DEMO_CROP) as c:
        win = from_bounds(*c.bounds, transform=s.transform).round_offsets().round_lengths()
    r0, c0 = int(win.row_off), int(win.col_off)
    r1, c1 = r0 + int(win.height), c0 + int(win.width)
    b = args.buffer
    held = (slice(max(r0 - b, 0), r1 + b), slice(max(c0 - b, 0), c1 + b))
    img_train = img.copy(deep=True)
    img_train.values[(slice(None), *held)] = img.rio.nodata
    lab_train = lab.squeeze("band", drop=True).copy(deep=True)
    lab_train.values[held] = 0  # NLCD nodata: unlabelled

    pairs = enumerate(zip(NAMES, COLORS, strict=True))
    classes = [{"id": i + 1, "name": n, "color": c} for i, (n, c) in pairs]
    chips = xlc.sample_chips(img_train, lab_train, size="auto", classes=classes)
    splits = xlc.spatial_split(chips, block_size=7680.0, buffer=960.0,
                               fractions=(0.85, 0.15, 0.0), seed=args.seed)  # fmt: skip
    print(splits, "\n", splits.summary().to_string())
    with tempfile.TemporaryDirectory() as runs, warnings.catch_warnings():
        warnings.simplefilter("ignore", xlc.errors.XLandcoverWarning)
        result = xlc.train(splits, out_dir=runs, max_minutes=args.minutes, seed=args.seed,
                           progress=False)  # fmt: skip
        crop_img = xlc.open_raster(DEMO_CROP, chunks=None)
        crop_lab = xlc.open_raster(DEMO_LABELS, chunks=None)
        report = xlc.evaluate(crop_img, crop_lab, result.model)
        print(report)
        model = result.model
        extra = dict(model.metadata.extra)
        extra["metrics_demo_crop"] = {
            **report.summary(),
            "forest_val_miou": None if result.forest_report is None else result.forest_report.miou,
        }
        extra["provenance"] = {
            "script": "scripts/make_demo_model.py",
            "data": "../shared/data/zion-landsat8-nlcd (Landsat 8 2015-08-18, NLCD 2011)",
            "held_out": {
                "rows": [held[0].start, held[0].stop],
                "cols": [held[1].start, held[1].stop],
            },
            "minutes": args.minutes,
            "seed": args.seed,
        }
        with_metadata(
            model,
            args.out,
            description="Zion demo: U-Net (xlandcover recipe) on Landsat 8 + NLCD 2011",
            extra=extra,
            overwrite=True,
        )
    print(f"mIoU on the held-out demo crop {report.miou:.3f} -> {args.out}")
    assert np.isfinite(report.miou)


if __name__ == "__main__":
    main()
