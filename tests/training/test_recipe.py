"""The training recipe: settings from the data, seamless validation, budgets, comparisons."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.errors import ScheduleCutWarning, TrainingSettingsError, WeakModelWarning
from xlandcover.training import (
    SCHEDULES,
    AugmentConfig,
    DataProfile,
    auto_chip_size,
    auto_settings,
)
from xlandcover.training._recipe import SMALL_DATA_AUGMENT, bounded_class_weights, union_area
from xlandcover.training._train import _Ema, steps_that_fit

from .test_train import easy_labels, make_image

TINY_NET = {
    "architecture": "Unet",
    "encoder": "tu-test_efficientnet",
    "arch_kwargs": {"decoder_channels": (16, 8, 8, 8, 8)},
    "batch_size": 4,
    "steps_per_epoch": 2,
}


@pytest.fixture(scope="module")
def splits():
    img = make_image(192, 192, seed=3)
    chips = xlc.sample_chips(img, easy_labels(img), size=32)
    return xlc.spatial_split(chips, block_size=640.0, fractions=(0.6, 0.2, 0.2), seed=0)


def test_auto_recipe_fills_what_is_not_given_and_records_why(splits, tmp_path):
    result = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                       epochs=2, pixel_branch=8, **TINY_NET)  # fmt: skip
    s = result.settings
    assert s["recipe"] == "auto" and s["epochs"] == 2 and s["pixel_branch"] == 8  # given
    assert s["class_weights"] == "bounded" and s["normalization"] == "robust"  # chosen
    assert 0.99 <= s["ema"] < 1 and s["window"] == 32 and s["overlap"] == 8
    assert result.reasons["epochs"] == "given" and "spectrum" not in result.reasons["pixel_branch"]
    assert "chip size" in result.reasons["window"]
    # a few dozen chips: small data, regularised harder; what ran is what is recorded
    assert s["augment"] == SMALL_DATA_AUGMENT.to_dict() and s["weight_decay"] == 0.05
    assert "small data" in result.reasons["augment"]
    meta = result.model.metadata
    assert meta.extra["training"]["class_weights"] == "bounded"
    assert meta.extra["training"]["augment"]["cutout"] == SMALL_DATA_AUGMENT.cutout
    assert meta.extra["recipe"]["reasons"]["window"] == result.reasons["window"]
    assert meta.arch_kwargs["pixel_branch"] == 8 and (meta.window, meta.overlap) == (32, 8)
    report = json.loads((tmp_path / "training_report.json").read_text())
    assert report["settings"]["ema"] == s["ema"] and report["profile"]["chip_size"] == 32
    # a softmax temperature fitted on the validation chips, in the package predict uses
    t = report["calibration"]["temperature"]
    assert 0.05 <= t <= 20 and meta.temperature == pytest.approx(t)
    assert report["calibration"]["ece_after"] <= report["calibration"]["ece_before"] + 1e-9
    assert set(report["class_shares"]) == {"class 1", "class 2"}


def test_recipe_none_keeps_the_fixed_defaults(splits, tmp_path):
    r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                  recipe="none", epochs=1, **TINY_NET)  # fmt: skip
    assert r.settings["class_weights"] == "median_frequency" and r.settings["ema"] == 0.0
    assert r.settings["pixel_branch"] == 0 and "pixel_branch" not in r.model.metadata.arch_kwargs


def test_checkpoint_is_chosen_by_the_seamless_map_at_the_package_window(splits, tmp_path):
    r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                  epochs=3, window=64, overlap=16, **TINY_NET)  # fmt: skip
    meta = r.model.metadata
    assert (meta.window, meta.overlap) == (64, 16)  # what validation used, not the chip size
    # the score reported is the calibrated package's (its temperature reweighs blended
    # windows, which changed this map), and the package records that score
    again = xlc.evaluate(model=r.model, partition=splits.val)
    assert again.miou == pytest.approx(r.best_miou, abs=1e-12)
    assert xlc.load_model(r.path).metadata.extra["training"]["val_miou"] == r.best_miou
    assert "val_miou_before" in r.calibration and r.calibration["val_miou_after"] == r.best_miou
    assert r.val_report is not None and r.val_report.total == again.total
    best = r.history.loc[r.history["val_miou"].idxmax()]
    assert int(best["epoch"]) == r.best_epoch


@pytest.fixture
def ten_second_clock(monkeypatch):
    """Training's clock, where every reading is 10 s after the last (an epoch of a few dozen
    steps, its validation and checkpoint read as 60 s)."""
    import sys

    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr(
        sys.modules["xlandcover.training._train"], "_clock", lambda: float(next(clock))
    )


@pytest.mark.usefixtures("ten_second_clock")
def test_a_time_budget_sizes_the_schedule_so_it_ends(splits, tmp_path):
    r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                  epochs=50, max_minutes=3, lr=0.01, **TINY_NET)  # fmt: skip
    epochs = r.history["epoch"].tolist()
    assert 1 < len(epochs) < 50 and epochs == list(range(1, len(epochs) + 1))
    # the last step ran at the end of the (shortened) one-cycle schedule, not near its peak
    assert r.history["lr"].iloc[-1] == pytest.approx(0.01 * SCHEDULES["onecycle"](1.0))


@pytest.mark.usefixtures("ten_second_clock")
def test_time_left_after_whole_epochs_goes_to_a_shorter_last_epoch(splits, tmp_path):
    net = {**TINY_NET, "steps_per_epoch": 20}
    r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                  epochs=50, max_minutes=3.4, lr=0.01, **net)  # fmt: skip
    steps = r.history["step"].diff().fillna(r.history["step"].iloc[0]).astype(int).tolist()
    assert steps[:-1] == [20] * (len(steps) - 1) and 2 <= steps[-1] < 20, steps
    assert r.history["lr"].iloc[-1] == pytest.approx(0.01 * SCHEDULES["onecycle"](1.0))


@pytest.mark.usefixtures("ten_second_clock")
def test_a_long_first_epoch_is_sized_from_its_first_steps(splits, tmp_path, caplog):
    net = {**TINY_NET, "steps_per_epoch": 120}
    with caplog.at_level(logging.INFO, logger="xlandcover"):
        r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                      epochs=20, max_minutes=2.5, lr=0.01, **net)  # fmt: skip
    assert any("from the first 25 steps" in m.getMessage() for m in caplog.records)
    # the first epoch ran on the sized schedule: past its warm-up peak, not at the start of
    # the warm-up of 20 epochs (where the learning rate is under a tenth of its peak)
    assert r.history["lr"].iloc[0] > 0.5 * 0.01
    assert len(r.history) < 20
    assert r.history["lr"].iloc[-1] == pytest.approx(0.01 * SCHEDULES["onecycle"](1.0))


@pytest.mark.parametrize(
    ("seconds", "epochs_left", "expected"),
    [
        (1000, 10, (2, 50)),  # 2 epochs of 450 s, then 50 s: a validation and 50 steps
        (960, 10, (2, 0)),  # 10 steps left over: under a tenth of an epoch, not worth it
        (899, 10, (1, 399)),  # never a whole epoch's steps as the shorter one
        (10_000, 3, (3, 0)),  # never more epochs than planned
        (1000, 2, (2, 0)),
        (40, 10, (0, 0)),  # not even a validation fits
    ],
)
def test_a_budget_is_filled_with_steps_not_whole_epochs(seconds, epochs_left, expected):
    # 400 steps of 1 s per epoch and 50 s per epoch besides (validation, checkpoint)
    assert steps_that_fit(seconds, 1.0, 50.0, 400, epochs_left) == expected


def test_a_budget_too_short_for_the_schedule_warns(splits, tmp_path):
    with pytest.warns(ScheduleCutWarning, match="undertrained"):
        r = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                      epochs=5, max_minutes=0, **TINY_NET)  # fmt: skip
    assert r.history["epoch"].tolist() == [1]


def test_one_log_line_per_epoch(splits, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="xlandcover"):
        xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False, epochs=2,
                  **TINY_NET)  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if "train loss" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2: train loss")
    assert any("training settings (recipe auto)" in r.getMessage() for r in caplog.records)


def test_a_network_the_forest_beats_is_told_so(splits, tmp_path):
    # one step of a random net on a task a per-pixel threshold solves exactly
    with pytest.warns(WeakModelWarning, match="DOES NOT BEAT A PER-PIXEL RANDOM FOREST"):
        r = xlc.train(
            splits,
            out_dir=tmp_path,
            progress=False,
            epochs=1,
            steps_per_epoch=1,
            lr=0.0,
            **{k: v for k, v in TINY_NET.items() if k != "steps_per_epoch"},
        )
    assert r.forest_report is not None and r.forest_report.miou > 0.99
    assert r.beats_forest is False
    report = json.loads((tmp_path / "training_report.json").read_text())
    assert report["forest_val_miou"] == pytest.approx(r.forest_report.miou)


def test_settings_are_checked_before_any_work(splits, tmp_path):
    with pytest.raises(TrainingSettingsError, match="did you mean 'epochs'"):
        xlc.train(splits, out_dir=tmp_path, epoch=3)
    with pytest.raises(TrainingSettingsError, match="epochs must be a positive"):
        xlc.train(splits, out_dir=tmp_path, epochs=0)
    with pytest.raises(TrainingSettingsError, match="recipe must be"):
        xlc.train(splits, out_dir=tmp_path, recipe="fast")


def test_an_old_model_in_the_output_folder_is_never_taken_for_the_new_one(splits, tmp_path):
    first = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                      epochs=1, seed=1, **TINY_NET)  # fmt: skip
    second = xlc.train(splits, out_dir=tmp_path, progress=False, compare_forest=False,
                       epochs=1, seed=2, **TINY_NET)  # fmt: skip
    assert first.model.sha256 != second.model.sha256
    assert xlc.load_model(tmp_path / "best.xlc").sha256 == second.model.sha256


def test_bounded_class_weights_are_square_roots_of_median_frequency_within_bounds():
    # frequencies 0.9, 0.09, 0.009, 0.001 over one chip; median 0.0495
    counts = np.array([[900, 90, 9, 1, 0]])
    # sqrt(0.0495 / f): 0.2345 (raised to 1/4), 0.7416, 2.345, 7.036 (lowered to 4)
    want = [0.25, np.sqrt(0.0495 / 0.09), np.sqrt(0.0495 / 0.009), 4.0, 0.0]
    np.testing.assert_allclose(bounded_class_weights(counts), want)  # absent class: 0


def test_onecycle_schedule_matches_torch():
    import torch

    n = 2000
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=n)
    theirs = []
    for _ in range(n):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [SCHEDULES["onecycle"](i / (n - 1)) for i in range(n)]
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_ema_warms_up_then_averages_with_its_decay():
    import torch

    live = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        live.weight.fill_(0.0)
    ema = _Ema(live, 0.5)
    with torch.no_grad():
        live.weight.fill_(1.0)
    ema.update(live)  # warm-up decay (1 + 1) / (10 + 1)
    assert float(ema.module.weight.detach()) == pytest.approx(1 - 2 / 11)
    for _ in range(20):
        ema.update(live)
    assert ema.decay == 0.5 and float(ema.module.weight.detach()) == pytest.approx(1.0, abs=1e-5)
    assert _Ema(live, 0.0).module is live


def test_pixel_branch_starts_as_the_plain_model_and_packages_round_trip(tmp_path):
    import torch

    from xlandcover.model import build_architecture

    kwargs = {"encoder_name": "tu-test_efficientnet", "in_channels": 3, "classes": 2,
              "decoder_channels": [16, 8, 8, 8, 8]}  # fmt: skip
    torch.manual_seed(0)
    plain = build_architecture("Unet", kwargs).eval()
    torch.manual_seed(0)
    branched = build_architecture("Unet", {**kwargs, "pixel_branch": 4}).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain(x), branched(x))  # zero-initialised last layer
        branched.pixel[-1].weight.fill_(0.1)
    pkg = xlc.save_model(branched, tmp_path / "m.xlc", bands=["red", "green", "blue"],
                         classes=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                         window=32, architecture="Unet",
                         arch_kwargs={**kwargs, "pixel_branch": 4})  # fmt: skip
    module = xlc.load_model(pkg.path).build_module()
    with torch.no_grad():
        assert torch.equal(module(x), branched(x))
    img = make_image(64, 64)
    labels = xlc.predict(img, pkg).values
    assert set(np.unique(labels)) <= {1, 2}


def test_union_area_counts_overlapping_chips_once():
    tops = np.array([[0, 0], [0, 16], [16, 0], [100, 100]])
    mask = np.zeros((200, 200), dtype=bool)
    for r, c in tops:
        mask[r : r + 32, c : c + 32] = True
    assert union_area(tops, 32) == mask.sum()


def test_auto_chip_size_follows_pixel_size_and_extent():
    assert auto_chip_size([(8000, 8000)], 0.5) == 256
    assert auto_chip_size([(4000, 4000)], 0.5) == 128  # room for about 256 chips: 250 px
    assert auto_chip_size([(4000, 4000)], 10.0) == 128
    assert auto_chip_size([(1128, 1428)], 30.0) == 64
    assert auto_chip_size([(768, 1536)], 10.0) == 64  # room for about 256 chips: 68 px
    assert auto_chip_size([(512, 512)], 10.0) == 64  # never below 64
    assert auto_chip_size([(1000, 1500)] * 60, None) == 256  # many aerial tiles


def test_auto_settings_scale_steps_and_batches_with_the_data():
    small = DataProfile(20, 5, 64, 4, 30.0, 80_000, 1.0, (0.5, 0.5), 50_000)
    big = DataProfile(2000, 300, 256, 3, 0.3, 10**8, 1.0, (0.5, 0.5), 10**7)
    s, _ = auto_settings(small)
    b, _ = auto_settings(big)
    steps = s["epochs"] * s["steps_per_epoch"]
    assert s["batch_size"] == 16 and steps == 500  # 6 per chip, at least 500
    mid, _ = auto_settings(DataProfile(200, 40, 64, 4, 30.0, 800_000, 1.0, (0.5, 0.5), 10**5))
    assert mid["epochs"] * mid["steps_per_epoch"] == 1200  # 6 per chip
    medium, _ = auto_settings(DataProfile(700, 90, 64, 4, 30.0, 10**6, 1.0, (0.5,) * 2, 10**5))
    assert medium["epochs"] * medium["steps_per_epoch"] >= 1500 and medium["ema"] >= 0.99
    assert b["batch_size"] == 4 and b["epochs"] * b["steps_per_epoch"] == 6000
    assert s["window"] == 64 and b["window"] == 256
    assert b["val_every"] >= 1
    # small data (fewer than SMALL_DATA_CHIPS chips) is regularised harder
    assert s["weight_decay"] == 0.05 and s["augment"] == SMALL_DATA_AUGMENT
    assert s["augment"].cutout > AugmentConfig().cutout
    assert b["weight_decay"] == 1e-4 and b["augment"] == AugmentConfig()


def test_spectral_indices_are_computed_from_the_raw_bands_inside_the_network():
    import torch

    from xlandcover.errors import BandMismatchError
    from xlandcover.model import available_indices, resolve_indices
    from xlandcover.model._nets import SpectralIndices

    mean, std = [100.0, 50.0], [10.0, 5.0]
    net = SpectralIndices(torch.nn.Identity(), [(1, 0)], mean, std)
    raw = torch.tensor([[[[300.0]], [[100.0]]]])  # red 300, nir 100 -> ndvi = -0.5
    x = (raw - torch.tensor(mean).view(1, 2, 1, 1)) / torch.tensor(std).view(1, 2, 1, 1)
    out = net(x)
    assert out.shape == (1, 3, 1, 1) and float(out[0, 2]) == pytest.approx(2 * -0.5)
    assert torch.equal(out[:, :2], x)  # the bands pass through unchanged
    assert resolve_indices(["red", "nir"], ["ndvi"]) == [("ndvi", 1, 0)]
    assert resolve_indices(["a", "b"], {"mine": ["b", "a"]}) == [("mine", 1, 0)]
    s2 = ["B2", "B3", "B4", "B8", "B8A", "B11", "B12"]  # Sentinel-2 names, without zeros
    assert resolve_indices(s2, ["ndvi", "mndwi"]) == [("ndvi", 3, 2), ("mndwi", 1, 5)]
    assert available_indices(["B2", "B3", "B4", "B8"]) == []  # no B8A: could be Landsat
    with pytest.raises(BandMismatchError, match="needs bands 'nir' and 'red'"):
        resolve_indices(["blue", "green", "red"], ["ndvi"])
    with pytest.raises(BandMismatchError, match="unknown spectral index 'evi'"):
        resolve_indices(["red", "nir"], ["evi"])


def test_a_model_with_indices_trains_packages_and_predicts(tmp_path):
    img = make_image(128, 128, bands=("blue", "green", "red", "nir"), seed=5)
    chips = xlc.sample_chips(img, easy_labels(img), size=32)
    sp = xlc.spatial_split(chips, block_size=640.0, fractions=(0.6, 0.2, 0.2), seed=0)
    r = xlc.train(sp, out_dir=tmp_path, progress=False, compare_forest=False, epochs=1,
                  indices=["ndvi", "ndwi"], **TINY_NET)  # fmt: skip
    assert "indices" in r.reasons  # offered by the band names, not chosen by default
    meta = r.model.metadata
    assert meta.arch_kwargs["indices"]["pairs"] == [[3, 2], [1, 3]]
    assert meta.arch_kwargs["in_channels"] == 4  # the package takes the bands; indices inside
    labels = xlc.predict(img, r.model).values
    assert set(np.unique(labels)) <= {1, 2}
