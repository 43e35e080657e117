"""show_results: image, reference and the seamless prediction per chip, side by side."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

import xlandcover as xlc
from xlandcover.package import hex_to_rgb

from .conftest import make_image
from .test_chips import make_labels


def ids_of(rgb: np.ndarray, classes) -> np.ndarray:
    out = np.full(rgb.shape[:2], 255)
    for c in classes:
        out[(np.abs(rgb - np.array(hex_to_rgb(c.color)) / 255.0) < 1e-6).all(-1)] = c.id
    return out


def test_panels_show_the_chip_its_labels_and_the_map_of_the_whole_image(tiny_package, tmp_path):
    img = make_image(128, 128, seed=4)
    lab = make_labels(img, ids=(1, 2, 5, 7)).rio.write_nodata(255)
    lab.values[:20, :] = 255  # some unlabelled pixels
    chips = xlc.sample_chips(img, lab, size=32)
    full_map = xlc.predict(img, tiny_package).values
    fig = xlc.show_results(tiny_package, chips, n=3, context=10_000)  # context: the whole image
    axes = np.array(fig.axes).reshape(3, 3)
    shown = [int(ax.get_title().split()[1]) for ax in axes[:, 0]]
    assert len(set(shown)) == 3
    classes = tiny_package.metadata.classes
    for (ax_img, ax_ref, ax_pred), chip in zip(axes, shown, strict=True):
        i = int(np.flatnonzero(chips.table["chip"] == chip)[0])
        r, c = int(chips.table["row"].iloc[i]), int(chips.table["col"].iloc[i])
        _, labels, _ = chips.read(i)
        np.testing.assert_array_equal(ids_of(ax_ref.images[0].get_array(), classes), labels)
        np.testing.assert_array_equal(
            ids_of(ax_pred.images[0].get_array(), classes), full_map[r : r + 32, c : c + 32]
        )
        assert ax_img.images[0].get_array().shape == (32, 32, 3)
    plt.close(fig)
    path = xlc.gallery.save_results(tiny_package, chips, tmp_path / "results.png", n=2)
    assert path.stat().st_size > 0
