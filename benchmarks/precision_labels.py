"""How many labels bf16 (or fp16) autocast changes against fp32, on the embedded scenes.

The two scenes in ``xlandcover/data`` with their demo models (Zion: Landsat 8, U-Net
MobileNetV3-small x0.5; Dubai: aerial RGB, U-Net MobileNetV3-small), whole scenes at the
packages' windows, on this machine's device (CPU here). Prints JSON and saves it as
``benchmarks/results/precision_labels-<precision>-<device>-<cores>core.json``::

    python benchmarks/precision_labels.py [--precision bf16] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources
from pathlib import Path

import xlandcover as xlc
from xlandcover.model._package import NODATA_LABEL

ROOT = Path(__file__).resolve().parents[1]
SCENES = {
    "zion": ("zion-landsat8-demo.tif", "demo-zion.xlc", {}),
    "dubai": (
        "dubai-tile7-part004.jpg",
        "demo-dubai.xlc",
        {"pixel_grid": True, "bands": ["red", "green", "blue"]},
    ),
}


def compare(scene: str, precision: str, device: str) -> dict[str, object]:
    image, model, kw = SCENES[scene]
    data = resources.files("xlandcover") / "data"
    with resources.as_file(data / image) as path, resources.as_file(data / model) as pkg:
        img = xlc.open_raster(path, **kw)
        package = xlc.load_model(pkg)
        start = time.perf_counter()
        fp32 = xlc.predict(img, package, precision="fp32", device=device).values
        t32 = time.perf_counter() - start
        start = time.perf_counter()
        low = xlc.predict(img, package, precision=precision, device=device).values  # type: ignore[arg-type]
        tlow = time.perf_counter() - start
    valid = fp32 != NODATA_LABEL
    differ = int(((fp32 != low) & valid).sum())
    return {
        "pixels": int(valid.sum()),
        "labels_differing": differ,
        "fraction_differing": differ / int(valid.sum()),
        "seconds_fp32": round(t32, 2),
        f"seconds_{precision}": round(tlow, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import dask

    dask.config.set(scheduler="threads")
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "precision": args.precision,
        "scenes": {s: compare(s, args.precision, args.device) for s in SCENES},
    }
    text = json.dumps(result, indent=2)
    print(text)
    cores = len(os.sched_getaffinity(0))
    name = f"precision_labels-{args.precision}-{args.device}-{cores}core.json"
    (ROOT / "benchmarks" / "results" / name).write_text(text + "\n")


if __name__ == "__main__":
    main()
