"""Command line: ``xlandcover demo``, ``predict``, ``train``, ``evaluate``, ``chips``,
``sample-design`` and ``assess``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._compat import warn_deprecated
from ._deps import missing_dependency
from .errors import WeakModelWarning, XLandcoverError
from .io._raster import READ_CHUNKS, check_chunks
from .training._splits import PARTITIONS

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger("xlandcover")


@dataclass(frozen=True)
class Demo:
    image: str
    labels: str
    model: str
    pixel_grid: bool
    what: str


#: Embedded scenes (see xlandcover/data/README.md); the models never saw them in training.
DEMOS = {
    "dubai": Demo(
        "dubai-tile7-part004.jpg",
        "dubai-tile7-part004-labels.tif",
        "demo-dubai.xlc",
        True,
        "aerial RGB over Dubai, held-out tile 7",
    ),
    "zion": Demo(
        "zion-landsat8-demo.tif",
        "zion-landsat8-nlcd-demo.tif",
        "demo-zion.xlc",
        False,
        "Landsat 8 over Zion, Utah",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xlandcover", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="map an embedded scene with its demo model")
    demo.add_argument("--scene", choices=sorted(DEMOS), default="dubai", help="which scene")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    _add_chunks(demo, "chunk size in pixels of the reads")

    pred = sub.add_parser("predict", help="classify a raster into a land-cover map")
    pred.add_argument(
        "source", nargs="*", type=Path, help="raster(s); several stack as bands (or use --stac)"
    )
    pred.add_argument("--stac", metavar="URL", help="search this STAC API instead of rasters")
    pred.add_argument("--preset", default="sentinel-2-l2a", help="STAC preset (with --stac)")
    pred.add_argument("--bbox", help="W,S,E,N in degrees (with --stac)")
    pred.add_argument("--datetime", help="date or range, e.g. 2024-06-01/2024-08-31 (--stac)")
    pred.add_argument("--max-cloud", type=float, help="highest cloud cover in %% (with --stac)")
    pred.add_argument("--resolution", type=float, help="output pixel size (with --stac)")
    pred.add_argument("--crs", help="output CRS (with --stac; default: the bbox's UTM zone)")
    pred.add_argument("--model", required=True, type=Path, help="model package (.xlc)")
    pred.add_argument(
        "--aoi",
        type=Path,
        metavar="FILE",
        help="area of interest: a vector file of polygons (any CRS); chunks outside it are "
        "never read or run, pixels outside it are nodata",
    )
    pred.add_argument("--out", type=Path, help="output Zarr store")
    pred.add_argument("--cog", type=Path, help="output Cloud-Optimized GeoTIFF")
    pred.add_argument(
        "--cog-tiles",
        type=Path,
        metavar="DIR",
        help="also one COG per tile of a fixed grid in DIR, a VRT mosaic and a STAC catalog",
    )
    pred.add_argument(
        "--tile-size", type=int, default=None, metavar="N", help="pixels per tile (--cog-tiles)"
    )
    _add_chunks(pred, "processing chunk size in pixels (auto: at least 16 windows, as predict)")
    pred.add_argument("--window", type=int, help="window size (default: the package's)")
    pred.add_argument("--overlap", type=float, help="overlap, pixels or a fraction < 1")
    pred.add_argument("--batch-size", type=int, help="windows per forward pass")
    pred.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    pred.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="forward-pass arithmetic (autocast); auto: fp16 on GPUs with tensor cores, else fp32",
    )
    pred.add_argument("--bands", help="comma-separated band names of the source")
    pred.add_argument(
        "--match-bands-by-position",
        action="store_true",
        help="use the source's bands in their order even where they have no names",
    )
    pred.add_argument("--tta", action="store_true", help="average the four flips")
    pred.add_argument(
        "--min-size",
        type=int,
        metavar="N",
        help="minimum mapping unit in pixels (sieve): patches smaller than this are merged into "
        "their surroundings",
    )
    pred.add_argument("--mmu", type=int, dest="mmu_deprecated", help=argparse.SUPPRESS)
    pred.add_argument("--pixel-grid", action="store_true", help="accept rasters without CRS")
    pred.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    pred.add_argument(
        "--scheduler",
        default="local",
        help="'local' (a cluster sized to this machine), 'inprocess', or tcp://host:port",
    )
    pred.add_argument("--workers", type=int, help="workers of the local cluster")
    pred.add_argument("--resume", action="store_true", help="finish an interrupted --out job")
    pred.add_argument(
        "--dry-run",
        action="store_true",
        help="report the job (chunks in the area, windows, km2, output size, hours per worker "
        "from timing one chunk here) and write nothing",
    )

    tr = sub.add_parser("train", help="train a model from a TOML configuration")
    tr.add_argument("config", type=Path, help="run configuration (see examples/configs)")
    tr.add_argument("--out", type=Path, help="output folder (default: the config's)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument("--epochs", type=int, help="override the configured epochs")
    tr.add_argument("--max-minutes", type=float,
                    help="time budget: the schedule is sized to it (best kept)")  # fmt: skip
    tr.add_argument("--recipe", choices=["auto", "none"],
                    help="settings from the data (auto, default) or fixed defaults")  # fmt: skip
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")

    ev = sub.add_parser("evaluate", help="score a model on a held-out partition")
    ev.add_argument("config", type=Path, help="the run configuration the model was trained by")
    ev.add_argument("--model", required=True, type=Path, help="model package (.xlc)")
    ev.add_argument("--partition", default="test", choices=PARTITIONS, help="which one")
    ev.add_argument("--split", choices=PARTITIONS, dest="split_deprecated", help=argparse.SUPPRESS)
    ev.add_argument("--out", type=Path, help="folder for report.json and plots")
    ev.add_argument("--baseline", action="store_true", help="also a random-forest baseline")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ev.add_argument(
        "--calibration",
        action="store_true",
        help="also the expected calibration error before/after the package's temperature",
    )

    ch = sub.add_parser(
        "chips", help="export a configuration's chips as GeoTIFF pairs with a GeoParquet index"
    )
    ch.add_argument("config", type=Path, help="run configuration (see examples/configs)")
    ch.add_argument("--out", type=Path, required=True, help="output folder")
    ch.add_argument("--overwrite", action="store_true", help="replace an earlier export")

    sd = sub.add_parser(
        "sample-design", help="draw a stratified random sample of a map for accuracy and area"
    )
    sd.add_argument("map", type=Path, help="the label map (GeoTIFF/COG/Zarr of class ids)")
    sd.add_argument("--n", type=int, help="number of sample units")
    sd.add_argument(
        "--target-se",
        type=float,
        help="choose n for this standard error of overall accuracy (needs --users-accuracy)",
    )
    sd.add_argument(
        "--allocation", default="proportional", choices=["proportional", "equal", "neyman"]
    )
    sd.add_argument("--min-per-stratum", type=int, help="at least this many units per stratum")
    sd.add_argument(
        "--users-accuracy",
        help="anticipated user's accuracies: one value, or CLASS=U,CLASS=U,... (neyman, "
        "--target-se)",
    )
    sd.add_argument("--strata", type=Path, help="stratify by this raster instead of the map")
    sd.add_argument("--seed", type=int, default=0, help="seed of the draw")
    sd.add_argument("--out", type=Path, required=True, help="sample.gpkg, .geojson or .csv")
    _add_chunks(sd, "chunk size in pixels of the reads")
    sd.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sd.add_argument("--pixel-grid", action="store_true", help="accept maps without CRS")

    asx = sub.add_parser(
        "assess", help="accuracy and areas with confidence intervals from a labelled sample"
    )
    asx.add_argument("sample", type=Path, help="the labelled sample (.gpkg, .geojson, .csv)")
    asx.add_argument("--reference-column", default="reference", help="reference labels")
    asx.add_argument("--map-column", default="map", help="map classes")
    asx.add_argument("--stratum-column", default="stratum", help="strata")
    asx.add_argument("--pixel-area", type=float, help="m2 per pixel (default: the sample's)")
    asx.add_argument("--out", type=Path, help="folder for the JSON and the plot")

    args = parser.parse_args(argv)
    _renamed_flags(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # "Created N records"
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "demo": _demo,
        "predict": _predict,
        "train": _train,
        "evaluate": _evaluate,
        "chips": _chips,
        "sample-design": _sample_design,
        "assess": _assess,
    }
    try:
        return commands[args.command](args)
    except (XLandcoverError, OSError) as err:
        return _fail(err)
    except ImportError as err:  # an optional dependency that is not installed
        if (err.name or "").split(".")[0] == "xlandcover":
            raise
        return _fail(missing_dependency(err, f"xlandcover {args.command}"))


#: Deprecated flags: argparse destination -> (old flag, new flag, new destination).
RENAMED_FLAGS = {
    "chunk_deprecated": ("--chunk", "--chunks", "chunks"),
    "mmu_deprecated": ("--mmu", "--min-size", "min_size"),
    "split_deprecated": ("--split", "--partition", "partition"),
}


def _renamed_flags(args: argparse.Namespace) -> None:
    for dest, (old, new, target) in RENAMED_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            warn_deprecated(f"{old} is now {new}")
            setattr(args, target, value)


def _chunks(text: str) -> int | str:
    """``--chunks``: ``auto`` (the library's default) or a number of pixels."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'auto' nor a number of pixels"
        ) from None


def _add_chunks(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--chunks", type=_chunks, default="auto", metavar="auto|N", help=what)
    parser.add_argument("--chunk", type=int, dest="chunk_deprecated", help=argparse.SUPPRESS)


def _read_chunks(args: argparse.Namespace) -> int:
    """Chunks of the reads: the library's default (``READ_CHUNKS``) for ``--chunks auto``."""
    if args.chunks == "auto":
        return READ_CHUNKS
    check_chunks(args.chunks, what="--chunks")
    return int(args.chunks)


def _fail(err: BaseException) -> int:
    """Report ``err`` as one line (the CLI's errors are for people, not tracebacks)."""
    log.error("error: %s", " ".join(str(err).split()))
    return 1


def _demo(args: argparse.Namespace) -> int:
    from . import load_model, open_raster
    from .evaluation._evaluate import score_map

    demo = DEMOS[args.scene]
    data = resources.files("xlandcover") / "data"
    with (
        resources.as_file(data / demo.image) as image_path,
        resources.as_file(data / demo.labels) as labels_path,
        resources.as_file(data / demo.model) as model_path,
    ):
        model = load_model(model_path)
        img = open_raster(
            image_path, chunks=_read_chunks(args), bands=model.bands, pixel_grid=demo.pixel_grid
        )
        log.info(
            "Demo: %s (%s, %d x %d px, %s) with %s",
            demo.image,
            demo.what,
            img.sizes["x"],
            img.sizes["y"],
            img.rio.crs or "no CRS: pixel grid",
            model.metadata.description,
        )
        labels = img.landcover.predict(model)
        args.out.mkdir(parents=True, exist_ok=True)
        cog = args.out / "landcover.tif"
        _run(lambda: labels.landcover.to_cog(cog, overwrite=True), labels)
        log.info("Wrote %s (Cloud-Optimized GeoTIFF with colour table and class names)", cog)
        mapped = open_raster(cog, chunks=_read_chunks(args), pixel_grid=demo.pixel_grid)
        png = args.out / "landcover.png"
        _preview(img, mapped, model, png)
        log.info("Wrote %s (preview with legend)", png)
        _print_areas(mapped)
        reference = open_raster(labels_path, chunks=_read_chunks(args), pixel_grid=demo.pixel_grid)
        # score the map just written against the reference labels (no second prediction)
        report = score_map(mapped, reference, model)
        log.info("\nThe map against the reference labels of this scene:\n%s", report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import xarray as xr

    from . import load_model, open_raster, to_cog
    from .jobs._cluster import scheduler_address
    from .output._targets import check_distinct, output_lock, output_record

    if args.out is None and args.cog is None and args.cog_tiles is None and not args.dry_run:
        log.error("error: give an output: --out OUT.zarr, --cog OUT.tif and/or --cog-tiles DIR")
        return 2
    if bool(args.source) == bool(args.stac):
        log.error("error: give either raster paths or --stac URL (with --bbox and --datetime)")
        return 2
    stac_only = [f"--{k.replace('_', '-')}" for k in ("bbox", "datetime", "max_cloud",
                 "resolution", "crs") if getattr(args, k) is not None]  # fmt: skip
    if args.source and stac_only:
        log.error(
            "error: %s set%s the grid of a --stac search and would be ignored for rasters; "
            "to map a raster on another grid, warp it first into a virtual raster, read "
            "lazily window by window: gdalwarp -of VRT -t_srs EPSG:5070 -tr 1 1 -tap IN OUT.vrt",
            " and ".join(stac_only),
            "s" if len(stac_only) == 1 else "",
        )
        return 2
    inputs = [*args.source, args.model, *([args.aoi] if args.aoi is not None else [])]
    check_distinct([p for p in (args.out, args.cog, args.cog_tiles) if p is not None], inputs)
    read = _read_chunks(args)
    if args.out is not None and args.scheduler not in ("local", "inprocess"):
        scheduler_address(args.scheduler)  # a mistyped address fails before any work
    model = load_model(args.model)
    if args.stac:
        img = _load_stac(args, model, read)
    else:
        bands = args.bands.split(",") if args.bands else None
        img = open_raster(args.source, chunks=read, bands=bands, pixel_grid=args.pixel_grid)
    labels = img.landcover.predict(
        model,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
        chunks=args.chunks,
        precision=args.precision,
        match_bands="position" if args.match_bands_by_position else "name",
        aoi=args.aoi,
    )
    if args.min_size is not None:  # chunk-independent sieve, see docs/predict.md
        labels = labels.landcover.sieve(args.min_size)
    log.info(
        "Predicting %d x %d px in %d chunks (window %s, device %s)",
        img.sizes["x"],
        img.sizes["y"],
        labels.data.npartitions,
        args.window or "default",
        args.device,
    )
    if args.dry_run:
        _dry_run(labels, model, args)
        return 0
    job = None
    if args.out is not None:
        from .jobs._cluster import client_for
        from .output._resume import write_zarr_resumable

        with client_for(args.scheduler, n_workers=args.workers) as client:
            start = time.perf_counter()
            write_zarr_resumable(
                labels,
                args.out,
                client=client,
                resume=args.resume,
                overwrite=args.overwrite,
                inputs=[] if args.stac else inputs,
            )
            seconds = time.perf_counter() - start
        log.info("Wrote %s (%.2f Mpx in %.1f s)", args.out, labels.size / 1e6, seconds)
        job = (output_record(args.out, "zarr") or {}).get("job")
        # the COG is converted from the store rather than predicting a second time
        labels = xr.open_zarr(args.out, decode_coords="all", consolidated=False)["landcover"]
    if args.cog_tiles is not None:
        from .output._tiles import TILE_SIZE, write_cog_tiles

        tiles = partial(write_cog_tiles, labels, args.cog_tiles, tile=args.tile_size or TILE_SIZE,
                        job=job, overwrite=args.overwrite)  # fmt: skip
        _run(tiles, labels)
        log.info("Wrote the tiles, %s and %s in %s", "mosaic.vrt", "catalog.json", args.cog_tiles)
    if args.cog is not None:
        done = output_record(args.cog, "cog") if args.resume and job else None
        if done is not None and done.get("job") == job:
            with output_lock(args.cog):  # tidies what a kill right after publishing left
                log.info("%s was already written by this job", args.cog)
            return 0
        _run(partial(to_cog, labels, args.cog, overwrite=args.overwrite, job=job), labels)
        log.info("Wrote %s", args.cog)
    return 0


def _load_stac(args: argparse.Namespace, model: Any, read: int) -> xr.DataArray:
    """The STAC imagery of ``predict --stac``: searched per region of the job's regions (on
    the workers, as they are computed) when the grid is known without items (the preset or
    ``--resolution`` gives the pixel size), else with one search now."""
    from .output._resume import REGION_CHUNKS
    from .prediction._predict import AUTO_CHUNK_WINDOWS
    from .stac import get_preset
    from .stac._load import load_stac

    per_region = args.resolution is not None or get_preset(args.preset).resolution is not None
    if per_region and args.chunks == "auto":  # the job's chunks, so regions are the writer's
        read = AUTO_CHUNK_WINDOWS * (args.window or model.metadata.window)
    img = load_stac(
        args.stac,
        preset=args.preset,
        bbox=[float(v) for v in args.bbox.split(",")] if args.bbox else None,
        datetime=args.datetime,
        max_cloud=args.max_cloud,
        resolution=args.resolution,
        crs=args.crs,
        model=model,
        chunks=read,
        search_region=REGION_CHUNKS if per_region else None,
    )
    if per_region:
        log.info("STAC: searched per region of %d x %d chunks -> %s", REGION_CHUNKS,
                 REGION_CHUNKS, img.attrs["composite"])  # fmt: skip
    else:
        log.info("STAC: %d items -> %s (one search: give --resolution to search per region)",
                 len(img.attrs["stac_items"]), img.attrs["composite"])  # fmt: skip
    return img


def _dry_run(labels: xr.DataArray, model: object, args: argparse.Namespace) -> None:
    """What ``predict`` would do: chunks (inside the area), windows, km², output size, and
    hours per worker from timing one chunk here. Computes one chunk; writes nothing."""
    from itertools import pairwise

    import numpy as np

    from .model._package import ModelPackage
    from .model._runtime import size_multiple
    from .output._progress import mean_pixel_area
    from .prediction._graph import inside_chunks
    from .prediction._predict import _window
    from .prediction._windows import axis_grid

    assert isinstance(model, ModelPackage)
    data = labels.data
    rows, cols = data.chunks[-2], data.chunks[-1]
    inside = inside_chunks(data)
    if inside is None:
        inside = np.ones((len(rows), len(cols)), dtype=bool)
    win, ovl = _window(model.metadata, size_multiple(model), args.window, args.overlap)
    per_axis = []
    for length, chunks in ((labels.sizes["y"], rows), (labels.sizes["x"], cols)):
        grid = axis_grid(length, window=win, overlap=ovl, multiple=size_multiple(model))
        edges = [int(e) for e in np.cumsum((0, *chunks))]
        per_axis.append(np.array([len(grid.touching(a, b)) for a, b in pairwise(edges)]))
    windows = int((inside * per_axis[0][:, None] * per_axis[1][None, :]).sum())
    pixels_inside = int((inside * np.asarray(rows)[:, None] * np.asarray(cols)[None, :]).sum())
    area = mean_pixel_area(labels)
    first = np.argwhere(inside)[len(np.argwhere(inside)) // 2]  # a chunk in the middle
    block = data.blocks[tuple(int(i) for i in first)]
    block.compute(scheduler="threads")  # builds the model (once per worker in a real job)
    start = time.perf_counter()
    block.compute(scheduler="threads")
    seconds = time.perf_counter() - start
    n_inside = int(inside.sum())
    log.info("Dry run (nothing written):")
    log.info("  chunks: %d of %d meet the area of interest (%d x %d px chunks)", n_inside,
             inside.size, rows[0], cols[0])  # fmt: skip
    log.info("  windows: %d of %d x %d px (overlap %d px)", windows, win, win, ovl)
    if area is not None:
        log.info("  area: %.1f km2 in the chunks that run (%.3g m2 per pixel)",
                 pixels_inside * area / 1e6, area)  # fmt: skip
    size = labels.size * labels.dtype.itemsize
    log.info("  output: %d x %d px, %s uncompressed for the whole extent (chunks outside the "
             "area are constant and compress to almost nothing)", labels.sizes["x"],
             labels.sizes["y"], _bytes(size))  # fmt: skip
    log.info("  one chunk (%s) took %.2f s here: about %.2f hours per worker for the job",
             tuple(int(i) for i in first), seconds, seconds * n_inside / 3600)  # fmt: skip


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _run(job: Callable[[], object], labels: xr.DataArray) -> None:
    from dask.diagnostics import ProgressBar

    from .output._progress import mean_pixel_area, rate_text

    start = time.perf_counter()
    with ProgressBar(out=sys.stderr, minimum=1.0):
        job()
    seconds = time.perf_counter() - start
    rate = rate_text(labels.size, seconds, mean_pixel_area(labels))
    log.info("%.2f Mpx in %.1f s (%s)", labels.size / 1e6, seconds, rate)


def _print_areas(labels: xr.DataArray) -> None:
    """Per-class area of a written label map, read chunk by chunk."""
    import pandas as pd

    from .evaluation._areas import class_areas

    table = class_areas(labels)
    shown = table.drop(columns="id")
    shown["share"] = shown["share"].map("{:.1%}".format)
    with pd.option_context("display.float_format", "{:,.2f}".format):
        print("\n" + shown.to_string() + "\n")
    if "km2" not in table:
        print("(no CRS: areas in pixels only)\n")


def _preview(image: xr.DataArray, labels: xr.DataArray, model: object, path: Path) -> None:
    """RGB and class map side by side, with a legend, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .model._package import ModelPackage
    from .plot import plot_labels, plot_rgb

    assert isinstance(model, ModelPackage)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    plot_rgb(image, ax=left, title="image")
    plot_labels(labels[0], classes=model.classes, ax=right, title="land cover")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _train(args: argparse.Namespace) -> int:
    from .training._config import load_config
    from .training._train import train

    cfg = load_config(args.config)
    chips = cfg.chips()
    splits = cfg.splits(chips)
    log.info("%s\n%s", chips, splits.summary().to_string())
    settings = {}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.max_minutes is not None:
        settings["max_minutes"] = args.max_minutes
    if args.recipe is not None:
        settings["recipe"] = args.recipe
    out = args.out or cfg.out_dir
    with warnings.catch_warnings():
        # the verdict against the per-pixel forest is logged already, as a WARNING line
        warnings.simplefilter("ignore", WeakModelWarning)
        result = train(
            splits,
            out_dir=out,
            resume=args.resume,
            progress=not args.no_progress,
            config=cfg.train_config(),
            description=cfg.raw.get("output", {}).get("description", ""),
            extra={"config": cfg.path.name, "split": splits.assignment.to_dict("list")},
            **settings,
        )
    log.info("%s", result.history.to_string(index=False))
    log.info(
        "best epoch %d: validation mIoU %.3f -> %s",
        result.best_epoch,
        result.best_miou,
        result.path,
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluation._evaluate import evaluate
    from .training._config import load_config

    cfg = load_config(args.config)
    splits = cfg.splits()
    # the partition's chips, or those of the [evaluate] labels (e.g. a dense reference map)
    part = cfg.evaluation_chips(splits, args.partition)
    if cfg.has_evaluation_labels:
        log.info("Scoring on the [evaluate] labels: %d chips in the %s partition", len(part),
                 args.partition)  # fmt: skip
    out = args.out or args.model.parent / f"eval-{args.partition}"
    out.mkdir(parents=True, exist_ok=True)
    from dask.diagnostics import ProgressBar

    t0 = time.monotonic()
    with ProgressBar(out=sys.stderr, minimum=1.0):  # predicting the held-out regions
        report = evaluate(model=args.model, partition=part, device=args.device)
    log.info("U-Net on %s (%d chips, %.0f s):\n%s", args.partition, len(part),
             time.monotonic() - t0, report)  # fmt: skip
    report.to_json(out / "report.json")
    _save_plots(report, out, "")
    if args.baseline:
        from .training._baseline import forest_baseline

        t0 = time.monotonic()  # trained on the training labels, scored where the model is
        base = forest_baseline(splits.train, part, eval_stride=1, seed=0)
        log.info("Random forest, per pixel (%d training px, %d scored px, %.0f s):\n%s",
                 base.n_train_pixels, base.n_scored_pixels, time.monotonic() - t0,
                 base.report)  # fmt: skip
        base.report.to_json(out / "baseline-report.json")
        _save_plots(base.report, out, "baseline-")
        table = report.table()[["iou"]].rename(columns={"iou": "model IoU"})
        table["random forest IoU"] = base.report.iou
        table.loc["macro mIoU"] = [report.miou, base.report.miou]
        log.info("%s", table.to_string(float_format=lambda v: f"{v:.3f}"))
        (out / "comparison.json").write_text(
            json.dumps(
                {"model": report.summary(), "random_forest": base.report.summary()}, indent=1
            )
        )
    if args.calibration:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .evaluation._evaluate import evaluate_calibration

        with ProgressBar(out=sys.stderr, minimum=1.0):
            calibration = evaluate_calibration(model=args.model, partition=part, device=args.device)
        log.info("Calibration on %s: %s", args.partition, calibration)
        (out / "calibration.json").write_text(json.dumps(calibration.summary(), indent=1))
        fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
        calibration.plot(ax=ax)
        fig.savefig(out / "reliability.png", dpi=100)
        plt.close(fig)
    log.info("reports and plots in %s", out)
    return 0


def _chips(args: argparse.Namespace) -> int:
    from .training._config import load_config

    cfg = load_config(args.config)
    chips = cfg.chips()
    splits = cfg.splits(chips)
    log.info("%s\n%s", chips, splits.summary().to_string())
    index = splits.export(args.out, overwrite=args.overwrite)
    log.info("Wrote %d chips to %s/images and %s/labels, index %s",
             sum(len(p) for p in splits), args.out, args.out, index)  # fmt: skip
    return 0


def _per_class(text: str | None) -> dict[int, float] | float | None:
    """``"0.9"`` -> 0.9; ``"1=0.7,2=0.95"`` -> {1: 0.7, 2: 0.95}."""
    if text is None:
        return None
    if "=" not in text:
        return float(text)
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {int(k): float(v) for k, v in pairs}


def _sample_design(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import open_raster
    from .evaluation._sampling import sample_design, sample_size, write_sample

    grid = args.pixel_grid
    labels = open_raster(args.map, chunks=_read_chunks(args), pixel_grid=grid)[0]
    strata = None
    if args.strata is not None:
        strata = open_raster(args.strata, chunks=_read_chunks(args), pixel_grid=grid)[0]
    accuracy = _per_class(args.users_accuracy)
    n = args.n
    if n is None:
        if args.target_se is None or accuracy is None:
            log.error("error: give --n, or --target-se with --users-accuracy")
            return 2
        from .evaluation._areas import class_areas

        counts = class_areas(strata if strata is not None else labels)
        n = sample_size(dict(zip(counts["id"], counts["pixels"], strict=True)), accuracy,
                        target_se=args.target_se)  # fmt: skip
        log.info("n = %d for a standard error of %.3f (Olofsson et al. 2014, eq. 13)", n,
                 args.target_se)  # fmt: skip
    sample = sample_design(
        labels,
        n=n,
        allocation=args.allocation,
        min_per_stratum=args.min_per_stratum,
        strata=strata,
        seed=args.seed,
        users_accuracy=accuracy,
    )
    path = write_sample(sample, args.out, overwrite=args.overwrite)
    design = sample.attrs["sampling_design"]
    table = pd.DataFrame(
        {"pixels": design["stratum_pixels"], "units": design["units_per_stratum"]}
    ).rename_axis("stratum")
    log.info("%s\nWrote %s (%d units; fill the 'reference' column)", table.to_string(), path,
             len(sample))  # fmt: skip
    return 0


def _assess(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluation._accuracy import assess_sample

    result = assess_sample(
        args.sample,
        reference=args.reference_column,
        mapped=args.map_column,
        stratum=args.stratum_column,
        pixel_area=args.pixel_area,
    )
    print(result)
    out = args.out or args.sample.parent
    out.mkdir(parents=True, exist_ok=True)
    stem = args.sample.stem
    result.to_json(out / f"{stem}-accuracy.json")
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(result.classes), 4.0), layout="constrained")
    result.plot(ax=ax)
    fig.savefig(out / f"{stem}-areas.png", dpi=100)
    plt.close(fig)
    log.info("Wrote %s and %s", out / f"{stem}-accuracy.json", out / f"{stem}-areas.png")
    return 0


def _save_plots(report: object, out: Path, prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluation._metrics import Report

    assert isinstance(report, Report)
    for name, draw in (("confusion", report.plot_confusion), ("per-class", report.plot_per_class)):
        fig, ax = plt.subplots(figsize=(6, 5))
        draw(ax=ax)
        fig.tight_layout()
        fig.savefig(out / f"{prefix}{name}.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
