"""The figure of docs/concepts.md: a scene's window grid, two chunks with their halo, and the
blending weights along one axis.

    .venv/bin/python scripts/make_concept_figure.py [docs/img/concepts.png]

Deterministic and offline: the grid, halo and weights come from
``xlandcover.prediction._windows`` (the functions ``predict`` itself uses), nothing is read from
disk or the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from xlandcover.prediction._windows import axis_grid

#: A small scene: 1100 x 800 px, windows of 256 px overlapping by 64 (stride 192), two chunks
#: of 550 px side by side.
WIDTH, HEIGHT = 1100, 800
WINDOW, OVERLAP, MULTIPLE = 256, 64, 32
CHUNK_X = 550
COLORS = {"A": "#1f77b4", "B": "#d62728"}


def main(out: Path) -> None:
    gx = axis_grid(WIDTH, window=WINDOW, overlap=OVERLAP, multiple=MULTIPLE)
    gy = axis_grid(HEIGHT, window=WINDOW, overlap=OVERLAP, multiple=MULTIPLE)
    weights = gx.weights()  # the real blending profile of one window, as predict uses it
    halo = gx.halo
    chunks = {"A": (0, CHUNK_X), "B": (CHUNK_X, WIDTH)}

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 8.2), height_ratios=(3, 1.6), constrained_layout=True
    )

    # --- the scene, its window grid and the two chunks with their halo
    top.add_patch(Rectangle((0, 0), WIDTH, HEIGHT, facecolor="#f2f2f2", edgecolor="black"))
    for sy in gy.starts:
        for sx in gx.starts:
            top.add_patch(
                Rectangle((sx, sy), WINDOW, WINDOW, fill=False, edgecolor="#888888", lw=0.6)
            )
    sx, sy = int(gx.starts[2]), int(gy.starts[1])  # one window, highlighted
    top.add_patch(Rectangle((sx, sy), WINDOW, WINDOW, fill=False, edgecolor="black", lw=2.2))
    top.annotate(
        f"one window\n({WINDOW} px)",
        (sx + WINDOW / 2, sy + WINDOW / 2),
        ha="center",
        va="center",
        fontsize=9,
    )
    for name, (x0, x1) in chunks.items():
        color = COLORS[name]
        h0, h1 = max(x0 - halo, 0), min(x1 + halo, WIDTH)
        top.add_patch(
            Rectangle((x0, 0), x1 - x0, HEIGHT, facecolor=color, alpha=0.12, edgecolor="none")
        )
        top.add_patch(
            Rectangle(
                (h0, -12 if name == "A" else -24),
                h1 - h0,
                HEIGHT + (24 if name == "A" else 48),
                fill=False,
                edgecolor=color,
                lw=1.8,
                ls="--",
            )
        )
        top.text(
            (x0 + x1) / 2,
            HEIGHT + 40,
            f"chunk {name}: interior [{x0}, {x1})\nplus halo: [{h0}, {h1})",
            ha="center",
            va="top",
            color=color,
            fontsize=9,
        )
    top.axvline(CHUNK_X, color="black", lw=1.2)
    top.set_xlim(-30, WIDTH + 30)
    top.set_ylim(HEIGHT + 110, -50)
    top.set_aspect("equal")
    top.set_xlabel("x (px)")
    top.set_ylabel("y (px)")
    top.set_title(
        f"Window grid anchored to the scene (window {WINDOW}, overlap {OVERLAP}, "
        f"stride {gx.stride}); halo = window - 1 = {halo} px",
        fontsize=10,
    )

    # --- 1-D blending weights of every window along x, and their sum
    x = np.arange(WIDTH)
    total = np.zeros(WIDTH)
    for i, start in enumerate(gx.starts):
        profile = np.full(WIDTH, np.nan)
        profile[start : start + WINDOW] = weights
        total[start : start + WINDOW] += weights
        bold = start == sx
        bottom.plot(x, profile, color="black" if bold else f"C{i % 10}", lw=2 if bold else 1.2)
    bottom.plot(x, total, color="black", ls=":", lw=1.2, label="sum of weights (divided out)")
    bottom.axvline(CHUNK_X, color="black", lw=1.2)
    for name, (x0, x1) in chunks.items():
        bottom.axvspan(x0, x1, color=COLORS[name], alpha=0.12, lw=0)
    bottom.set_xlim(-30, WIDTH + 30)
    bottom.set_ylim(0, max(total.max(), 1.0) * 1.1)
    bottom.set_xlabel("x (px)")
    bottom.set_ylabel("weight")
    bottom.set_title(
        "Blending weight of each window along x: 1e-3 + (1 - 1e-3) sin²(π (i + 0.5) / window)",
        fontsize=10,
    )
    bottom.legend(loc="upper right", fontsize=8)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/img/concepts.png"))
