"""Training: reproducibility, records, resume, early stopping, losses, augmentations, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import (
    EmptySplitError,
    ScheduleCutWarning,
    UnknownArchitectureError,
)
from xlandcover.model import NODATA_LABEL
from xlandcover.training import AugmentConfig, band_statistics, make_loss, median_frequency_weights
from xlandcover.training._augment import Augment
from xlandcover.training._train import _epoch_order, _sample_weights

from ..conftest import make_image

TINY = {
    "recipe": "none",
    "architecture": "Unet",
    "encoder": "tu-test_efficientnet",
    "arch_kwargs": {"decoder_channels": (16, 8, 8, 8, 8)},
    "batch_size": 4,
    "steps_per_epoch": 3,
    "progress": False,
}


def easy_labels(img: xr.DataArray) -> xr.DataArray:
    """Class 1 where the red band is dark, 2 where bright: learnable from one pixel."""
    values = np.where(img.values[0] < 130, 1, 2).astype(np.uint8)
    return xr.DataArray(values, dims=("y", "x"), coords={"y": img.y, "x": img.x}).rio.write_crs(
        img.rio.crs
    )


@pytest.fixture(scope="module")
def splits():
    img = make_image(192, 192, seed=3)
    chips = xlc.sample_chips(img, easy_labels(img), size=32)
    return xlc.spatial_split(chips, block_size=640.0, fractions=(0.6, 0.2, 0.2), seed=0)


def run(splits, tmp_path, name, compare_forest=False, **kw):
    settings = {**TINY, **kw}
    progress = settings.pop("progress")
    return xlc.train(
        splits,
        out_dir=tmp_path / name,
        progress=progress,
        compare_forest=compare_forest,
        **settings,
    )


def test_training_is_reproducible_and_records_everything(splits, tmp_path):
    a = run(splits, tmp_path, "a", epochs=2)
    b = run(splits, tmp_path, "b", epochs=2)
    assert a.history["train_loss"].tolist() == b.history["train_loss"].tolist()
    assert a.model.sha256 == b.model.sha256
    for f in ("best.xlc", "last.pt", "history.csv", "history.json", "curves.png"):
        assert (a.out_dir / f).stat().st_size > 0
    assert json.loads((a.out_dir / "history.json").read_text())[1]["epoch"] == 2
    meta = a.model.metadata
    assert meta.bands == ("red", "green", "blue") and meta.class_ids == (1, 2)
    mean, std = band_statistics(splits.train)
    pixels = np.concatenate(
        [splits.train.read(i)[0].reshape(3, -1) for i in range(len(splits.train))], axis=1
    )
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=1e-6)
    np.testing.assert_allclose(meta.mean, mean)
    np.testing.assert_allclose(meta.std, std)
    assert meta.extra["training"]["encoder"] == "tu-test_efficientnet"
    assert meta.extra["training"]["epoch"] == a.best_epoch
    assert meta.window == 32


def test_model_learns_an_easy_task(splits, tmp_path):
    result = run(splits, tmp_path, "learn", epochs=6, steps_per_epoch=8, lr=0.01, augment=None)
    assert result.best_miou > 0.75
    report = xlc.evaluate(model=result.model, partition=splits.test)
    assert report.miou > 0.7 and report.total == len(splits.test) * 32 * 32


def test_resume_equals_an_uninterrupted_run(splits, tmp_path):
    straight = run(splits, tmp_path, "straight", epochs=3, patience=99)
    with pytest.warns(ScheduleCutWarning, match="before its learning-rate schedule ended"):
        run(splits, tmp_path, "resumed", epochs=3, patience=99, max_minutes=0)  # stops after 1
    assert (
        len(np.loadtxt(tmp_path / "resumed" / "history.csv", skiprows=1, delimiter=",", ndmin=2))
        == 1
    )
    resumed = run(splits, tmp_path, "resumed", epochs=3, patience=99, resume=True)
    assert resumed.history["epoch"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(
        resumed.history["train_loss"], straight.history["train_loss"], rtol=1e-6
    )


def test_early_stopping_when_validation_stops_improving(splits, tmp_path):
    frozen = run(splits, tmp_path, "frozen", epochs=6, lr=0.0, schedule="constant", patience=2)
    assert frozen.history["epoch"].tolist() == [1, 2, 3] and frozen.best_epoch == 1


def test_class_aware_sampler_draws_chips_of_rare_classes_more_often():
    # three chips of the common class only, one with the rare class as well
    counts = np.array([[900, 0], [900, 0], [900, 0], [800, 100]])
    weights = _sample_weights(SimpleNamespace(counts=counts))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[3] > 2 * weights[0] and np.allclose(weights[:3], weights[0])
    order = _epoch_order(4, 4000, weights, np.random.default_rng(0))
    share = np.mean(order == 3)
    assert share == pytest.approx(weights[3], abs=0.03) and share > 0.4  # uniform: 0.25
    uniform = _epoch_order(4, 4000, None, np.random.default_rng(0))
    assert np.bincount(uniform).tolist() == [1000] * 4  # permutations: each chip equally often


def test_losses_are_different_functions_and_the_sampler_changes_the_batches(splits, tmp_path):
    runs = {
        loss: run(splits, tmp_path, loss, epochs=1, loss=loss, sampler="class_aware")
        for loss in ("ce", "focal", "dice")
    }
    first = {loss: r.history["train_loss"].iloc[0] for loss, r in runs.items()}
    assert all(np.isfinite(v) and v > 0 for v in first.values())
    assert len({round(v, 6) for v in first.values()}) == 3, first
    uniform = run(splits, tmp_path, "ce-uniform", epochs=1, loss="ce", sampler="uniform")
    assert uniform.history["train_loss"].iloc[0] != first["ce"]


def test_errors_list_valid_names(splits, tmp_path):
    with pytest.raises(UnknownArchitectureError, match="unetplusplus"):
        run(splits, tmp_path, "x", architecture="Unet3D")
    with pytest.raises(UnknownArchitectureError, match="resnet34"):
        run(splits, tmp_path, "x", encoder="resnet35")
    with pytest.raises(UnknownArchitectureError, match="timm encoder"):
        run(splits, tmp_path, "x", encoder="tu-no_such_net")
    with pytest.raises(UnknownArchitectureError, match="combo"):
        run(splits, tmp_path, "x", loss="hinge")
    empty_val = (splits.train, splits.val.subset(np.zeros(len(splits.val), dtype=bool)))
    with pytest.raises(EmptySplitError, match="val partition is empty"):
        xlc.train(empty_val, out_dir=tmp_path / "x", **{k: v for k, v in TINY.items()})


def test_median_frequency_weights_by_hand():
    # class 0: 30 px in chip A (100 px); class 1: 70 in A + 100 in B (200 px); class 2 never
    counts = np.array([[30, 70, 0], [0, 100, 0]])
    freq0, freq1 = 30 / 100, 170 / 200
    median = np.median([freq0, freq1])
    np.testing.assert_allclose(
        median_frequency_weights(counts), [median / freq0, median / freq1, 0.0]
    )


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "combo"])
def test_losses_skip_ignored_pixels(name):
    import torch

    torch.manual_seed(0)
    loss = make_loss(name, n_classes=3, class_weights=np.array([1.0, 2.0, 0.5]))
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :4] = NODATA_LABEL
    other = logits.clone()
    other[:, :, :4] = torch.randn(2, 3, 4, 8) * 10
    assert float(loss(logits, target)) == pytest.approx(float(loss(other, target)), rel=1e-5)
    assert float(loss(logits, target)) != pytest.approx(float(loss(logits.flip(1), target)))


def test_geometric_augmentations_move_image_and_mask_together():
    import torch

    torch.manual_seed(0)
    geometric = AugmentConfig(brightness=0, contrast=0, channel_dropout=0, blur=0, cutout=0)
    aug = Augment(geometric, n_bands=2)
    mask = torch.randint(0, 4, (16, 24, 24))
    image = torch.stack([mask.float(), torch.rand(16, 24, 24)], dim=1)
    out, out_mask = aug(image, mask)
    assert out_mask.dtype == mask.dtype
    assert torch.equal(out[:, 0], out_mask.float())  # exact: nearest rotations, no blending
    assert not torch.equal(out_mask, mask)  # something moved
    full = Augment(AugmentConfig(channel_dropout=0.5, cutout=0.5, blur=0.5), n_bands=2)
    _, m = full(image, mask)
    assert set(m.unique().tolist()) <= {0, 1, 2, 3}  # intensity changes never touch labels


def test_scale_jitter_zooms_image_and_mask_and_ignores_what_it_pads():
    import torch

    torch.manual_seed(0)
    zoom = AugmentConfig(
        flips=False, rot90=False, brightness=0, contrast=0, channel_dropout=0, blur=0, cutout=0,
        scale=1.0,
    )  # fmt: skip
    # 8 x 8 px blocks of one class, the image one more than the class (so 0 only where padded)
    mask = torch.randint(0, 4, (32, 8, 8)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    mask[:2, :8] = NODATA_LABEL
    image = mask[:, None].float() + 1
    image[:2, :, :8] = 0
    out, out_mask = Augment(zoom, n_bands=1)(image, mask)
    assert out_mask.dtype == mask.dtype
    assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3, NODATA_LABEL}
    zoomed = [i for i in range(32) if not torch.equal(out_mask[i], mask[i])]
    assert 8 <= len(zoomed) <= 24  # half the samples, give or take
    padded = out_mask == NODATA_LABEL
    assert padded[2:].any()  # some zoomed out, and their empty edges are ignored ...
    # ... where the image is 0 (but along the edge, where bilinear blends in a neighbour)
    assert float((out[:, 0][padded] == 0).float().mean()) > 0.9
    labelled = ~padded
    # bilinear image against nearest mask: they agree away from block edges
    agree = (out[:, 0][labelled] - 1 - out_mask[labelled].float()).abs() < 0.5
    assert float(agree.float().mean()) > 0.9
    assert Augment(AugmentConfig(), n_bands=1).config.scale == 0  # off unless asked for


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("UnetPlusPlus", {"decoder_channels": (16, 8, 8, 8, 8)}),
        ("DeepLabV3Plus", {"decoder_channels": 16, "encoder_output_stride": 16}),
        ("Segformer", {"decoder_segmentation_channels": 16}),
    ],
)
def test_other_architectures_by_name(splits, tmp_path, arch, kwargs):
    r = run(
        splits, tmp_path, arch, epochs=1, steps_per_epoch=1, architecture=arch, arch_kwargs=kwargs
    )
    assert r.model.metadata.architecture.lower() == arch.lower()
    labels = xlc.predict(splits.test.sources[0].image[:, :64, :64], r.model).values
    assert set(np.unique(labels)) <= {1, 2}


def test_local_encoder_weights_are_loaded(splits, tmp_path):
    from safetensors.torch import save_file

    from xlandcover.training import TrainConfig
    from xlandcover.training._train import _build_model

    cfg = TrainConfig(**{k: v for k, v in TINY.items() if k != "progress"})
    arch_kwargs = {"encoder_name": cfg.encoder, "in_channels": 3, "classes": 2,
                   **dict(cfg.arch_kwargs)}  # fmt: skip
    donor = _build_model(cfg, arch_kwargs)
    weights = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, weights)
    import torch

    torch.manual_seed(123)  # a different initialisation than the donor's
    loaded = _build_model(replace(cfg, encoder_weights=str(weights)), arch_kwargs)
    for (name, a), b in zip(
        donor.encoder.state_dict().items(), loaded.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_mixed_precision_path_runs_on_cpu_with_bfloat16(splits, tmp_path):
    amp = run(splits, tmp_path, "amp", epochs=1, amp="on")
    full = run(splits, tmp_path, "fp32", epochs=1, amp="off")
    a, b = amp.history["train_loss"].iloc[0], full.history["train_loss"].iloc[0]
    assert np.isfinite(a) and np.isfinite(amp.best_miou)
    assert a != b  # bfloat16 autocast really ran (its rounding shows in the loss) ...
    assert a == pytest.approx(b, rel=0.05)  # ... and computes the same loss
