"""A results gallery: image, reference and prediction side by side for sample chips.

:func:`show_results` (the ``show_results`` users of arcgis.learn know) predicts each chip with
the seamless predictor (:func:`xlandcover.predict`) on the chip plus a margin of context from
its image, so the prediction is what a map made with the model shows there, not what the
network makes of an isolated tile. ``xlandcover train`` saves one for the validation chips as
``results.png`` next to ``curves.png``. matplotlib is imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .chips import Chips
from .labels import ClassIndex
from .package import NODATA_LABEL, ModelPackage, hex_to_rgb, load_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def show_results(
    model: ModelPackage | str | os.PathLike[str],
    chips: Chips,
    *,
    n: int = 8,
    seed: int = 0,
    context: int | None = None,
    device: str = "auto",
) -> Figure:
    """Draw image, reference labels and prediction for ``n`` chips, one chip per row.

    Parameters
    ----------
    model
        A model package or its path.
    chips
        The chips to draw from (e.g. ``splits.val``): a seeded sample of ``n`` of them,
        favouring chips with more labelled pixels (sparse labels leave many almost empty).
    context
        Pixels of image around each chip the predictor also sees (clipped at the image's
        edge); default half the model's window.
    device
        Where the model runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        Unlabelled reference pixels are left white; the legend names the classes.

    Examples
    --------
    >>> fig = xlc.show_results(result.model, splits.val, n=4)  # doctest: +SKIP
    >>> fig.savefig("results.png")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .predict import predict

    package = model if isinstance(model, ModelPackage) else load_model(model)
    picked = _pick(chips, n, seed)
    margin = package.metadata.window // 2 if context is None else int(context)
    classes = package.metadata.classes
    index = ClassIndex(chips.class_ids, chips.unlabelled)
    fig, axes = plt.subplots(
        max(len(picked), 1), 3, figsize=(9.0, 3.0 * max(len(picked), 1)), squeeze=False
    )
    for row, i in enumerate(picked):
        rec = chips.table.iloc[i]
        src = chips.sources[int(rec["source"])]
        r, c, s = int(rec["row"]), int(rec["col"]), chips.size
        h, w = src.labels.shape
        r0, c0 = max(r - margin, 0), max(c - margin, 0)
        r1, c1 = min(r + s + margin, h), min(c + s + margin, w)
        window = src.image[:, r0:r1, c0:c1]
        mapped = np.asarray(predict(window, package, device=device).values)
        mapped = mapped[r - r0 : r - r0 + s, c - c0 : c - c0 + s]
        image, labels, valid = chips.read(i)
        reference = np.where(valid & (index(labels) < index.n), labels, NODATA_LABEL)
        ax_img, ax_ref, ax_pred = axes[row]
        ax_img.imshow(_stretch(image, valid, chips.bands), interpolation="nearest")
        ax_ref.imshow(_colours(reference, classes), interpolation="nearest")
        ax_pred.imshow(_colours(mapped, classes), interpolation="nearest")
        share = float((reference != NODATA_LABEL).mean())
        ax_img.set_title(f"chip {int(rec['chip'])} ({rec['group']})", fontsize=9)
        ax_ref.set_title(f"reference ({share:.0%} labelled)", fontsize=9)
        ax_pred.set_title("prediction", fontsize=9)
        for ax in axes[row]:
            ax.set_axis_off()
    handles = [Patch(facecolor=c.color, edgecolor="black", label=c.name) for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * (len(handles) // 5), 1, 1))
    return fig


def save_results(
    model: ModelPackage | str | os.PathLike[str],
    chips: Chips,
    path: str | os.PathLike[str],
    **kwargs: object,
) -> Path:
    """:func:`show_results` written to ``path`` (PNG), the figure closed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = show_results(model, chips, **kwargs)  # type: ignore[arg-type]
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _pick(chips: Chips, n: int, seed: int) -> list[int]:
    if len(chips) == 0 or n < 1:
        return []
    weight = chips.table["labelled"].to_numpy(dtype=np.float64) + 1.0
    rng = np.random.default_rng(seed)
    k = min(n, len(chips))
    return sorted(rng.choice(len(chips), size=k, replace=False, p=weight / weight.sum()).tolist())


def _stretch(image: np.ndarray, valid: np.ndarray, names: tuple[str, ...] | None) -> np.ndarray:
    """The red, green and blue bands (by name; else the first three, or one band as grey),
    each stretched between its 2nd and 98th percentiles; no data white."""
    if names is not None and {"red", "green", "blue"} <= set(names):
        bands = image[[names.index(b) for b in ("red", "green", "blue")]]
    elif image.shape[0] >= 3:
        bands = image[:3]
    else:
        bands = np.repeat(image[:1], 3, axis=0)
    out = np.ones((*image.shape[1:], 3))
    for b in range(3):
        v = bands[b].astype(np.float64)
        lo, hi = np.percentile(v[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        out[..., b] = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    out[~valid] = 1.0
    return out


def _colours(labels: np.ndarray, classes: tuple) -> np.ndarray:
    rgb = np.ones((*labels.shape, 3))
    for c in classes:
        rgb[labels == c.id] = np.array(hex_to_rgb(c.color)) / 255.0
    return rgb
