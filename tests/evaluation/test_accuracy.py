"""Design-based estimators against the published worked examples and closed forms."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import NonProbabilitySampleWarning, SampleDesignError, UnknownClassError
from xlandcover.evaluation import assess_error_matrix

# Olofsson et al. (2014), Table 8: sample counts, rows map class, columns reference class
# (1 deforestation, 2 forest gain, 3 stable forest, 4 stable non-forest); stratified by map
# class with n_h = 75, 75, 165, 325 (640 units); map areas in Landsat pixels of 30 m.
OLOFSSON_COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
OLOFSSON_CLASSES = {1: "deforestation", 2: "forest gain", 3: "stable forest", 4: "non-forest"}

# Stehman (2014), section 4 (Table 2): 4 strata of 40 000, 30 000, 20 000 and 10 000 pixels,
# 10 units each; strata A-D differ from the map classes of some units.
STEHMAN_STRATA = ["A"] * 10 + ["B"] * 10 + ["C"] * 10 + ["D"] * 10
STEHMAN_MAP = list("AAAAAAABBBABBBBBBBBBBBCCCCCCBBDDDDDDDDDD")
STEHMAN_REF = list("AAAAACBABCABBBBBAABBCCCCCDDBBADDDDDDDCCB")
STEHMAN_SIZES = {"A": 40_000, "B": 30_000, "C": 20_000, "D": 10_000}


def stehman_sample() -> pd.DataFrame:
    return pd.DataFrame({"stratum": STEHMAN_STRATA, "map": STEHMAN_MAP, "reference": STEHMAN_REF})


def test_olofsson_2014_table_8_areas_and_accuracies():
    counts = np.asarray(OLOFSSON_COUNTS)
    assert counts.sum(axis=1).tolist() == [75, 75, 165, 325] and counts.sum() == 640
    r = assess_error_matrix(
        OLOFSSON_COUNTS, OLOFSSON_PIXELS, classes=OLOFSSON_CLASSES, pixel_area=900.0
    )
    t = r.table(area_unit="ha")
    # published (section 5.3 of the paper): area in ha +- 95 % CI half-width
    assert t["area (ha)"].round().tolist() == [21_158, 11_686, 285_770, 581_386]
    assert t["± CI"].round().tolist() == [6_158, 3_756, 15_510, 16_282]
    assert t["map area (ha)"].tolist() == pytest.approx([18_000, 13_500, 288_000, 580_500])
    assert round(r.overall_accuracy, 2) == 0.95 and round(1.96 * r.overall_accuracy_se, 2) == 0.02
    assert t["user's acc."].round(2).tolist() == [0.88, 0.73, 0.93, 0.96]
    assert t["± UA CI"].round(2).tolist() == [0.07, 0.10, 0.04, 0.02]
    assert t["producer's acc."].round(2).tolist() == [0.75, 0.85, 0.93, 0.96]
    assert t["± PA CI"].round(2).tolist() == [0.21, 0.25, 0.03, 0.02]
    # the error matrix of area proportions (eq. 4): p_ij = W_i n_ij / n_i.
    w = np.asarray(OLOFSSON_PIXELS) / sum(OLOFSSON_PIXELS)
    want = w[:, None] * counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r.error_matrix.to_numpy(), want, rtol=1e-12)
    assert r.error_matrix.to_numpy().sum() == pytest.approx(1.0)
    assert r.classes["area_ci_low"].iloc[0] == pytest.approx((21_157.76 - 6_157.63) * 1e4, rel=1e-5)


def test_stehman_2014_numerical_example_strata_differ_from_map_classes():
    r = xlc.assess_sample(
        stehman_sample(), stratum_sizes=STEHMAN_SIZES, finite_population_correction=True
    )
    c = r.classes
    # published values (Stehman 2014, pp. 4932-4936), to the paper's rounding
    assert round(c.loc["A", "proportion"], 2) == 0.35
    assert round(c.loc["C", "proportion"], 2) == 0.20
    assert round(r.overall_accuracy, 2) == 0.63
    assert round(c.loc["B", "users_accuracy"], 3) == 0.574
    assert round(c.loc["B", "producers_accuracy"], 3) == 0.794
    assert round(r.error_matrix.loc["B", "C"], 2) == 0.08
    assert round(c.loc["A", "proportion_se"], 3) == 0.082
    assert round(c.loc["C", "proportion_se"], 3) == 0.064
    assert round(r.overall_accuracy_se, 3) == 0.085
    assert round(c.loc["B", "users_accuracy_se"], 3) == 0.125
    # the standard errors to 7 digits as R's mapaccuracy::stehman2014 (v0.1.2) computes them
    # for this example (its documented reproduction of the paper), finite population
    # correction included
    assert c.loc["A", "proportion_se"] == pytest.approx(0.0822478, abs=1e-7)
    assert c.loc["C", "proportion_se"] == pytest.approx(0.06427977, abs=1e-8)
    assert r.overall_accuracy_se == pytest.approx(0.08464219, abs=1e-8)
    assert c.loc["B", "users_accuracy_se"] == pytest.approx(0.1247822, abs=1e-7)
    assert c.loc["B", "producers_accuracy_se"] == pytest.approx(0.1165479, abs=1e-7)
    # areas are in pixels here (no pixel area): proportion x N
    assert c.loc["A", "area"] == pytest.approx(35_000)
    assert r.area_unit == "pixels" and r.probability_sample and not r.notes


def test_simple_random_sample_matches_the_closed_forms():
    rng = np.random.default_rng(4)
    n, population = 200, 50_000
    ref = rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2])
    mapped = np.where(rng.random(n) < 0.8, ref, rng.choice([1, 2, 3], size=n))
    sample = pd.DataFrame({"map": mapped, "reference": ref})
    for fpc in (False, True):
        r = xlc.assess_sample(
            sample, stratum=None, stratum_sizes=population, finite_population_correction=fpc
        )
        f = 1 - n / population if fpc else 1.0
        for k in (1, 2, 3):
            p = np.mean(ref == k)
            row = r.classes.loc[str(k)]
            assert row["proportion"] == pytest.approx(p)
            assert row["proportion_se"] == pytest.approx(np.sqrt(f * p * (1 - p) / (n - 1)))
            n_k = np.sum(mapped == k)
            u = np.sum((mapped == k) & (ref == k)) / n_k
            assert row["users_accuracy"] == pytest.approx(u)
            # ratio estimator under SRS: V(U) = f n U (1 - U) / ((n - 1) n_k)
            assert row["users_accuracy_se"] == pytest.approx(
                np.sqrt(f * n * u * (1 - u) / ((n - 1) * n_k))
            )
        oa = np.mean(mapped == ref)
        assert r.overall_accuracy == pytest.approx(oa)
        assert r.overall_accuracy_se == pytest.approx(np.sqrt(f * oa * (1 - oa) / (n - 1)))
    # the same SRS described by equal inclusion probabilities n / N instead of a size
    by_pi = xlc.assess_sample(sample.assign(inclusion_probability=n / population), stratum=None)
    assert by_pi.strata["pixels"].iloc[0] == pytest.approx(population)
    assert by_pi.overall_accuracy_se == pytest.approx(np.sqrt(oa * (1 - oa) / (n - 1)))


def card_producers_variance(counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Olofsson et al. (2014), eq. 7, written out independently of xlandcover."""
    n_i = counts.sum(axis=1)
    p = (sizes / sizes.sum())[:, None] * counts / n_i[:, None]
    users = np.diag(p) / p.sum(axis=1)
    prod = np.diag(p) / p.sum(axis=0)
    n_col = (sizes[:, None] * counts / n_i[:, None]).sum(axis=0)
    out = []
    for j in range(len(sizes)):
        first = sizes[j] ** 2 * (1 - prod[j]) ** 2 * users[j] * (1 - users[j]) / (n_i[j] - 1)
        rest = sum(
            sizes[i] ** 2 * counts[i, j] / n_i[i] * (1 - counts[i, j] / n_i[i]) / (n_i[i] - 1)
            for i in range(len(sizes))
            if i != j
        )
        out.append((first + prod[j] ** 2 * rest) / n_col[j] ** 2)
    return np.asarray(out)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=3), min_size=3, max_size=3),
    sizes=st.lists(st.integers(1_000, 10**7), min_size=3, max_size=3),
)
def test_general_estimators_reduce_to_olofsson_when_strata_are_map_classes(counts, sizes):
    cm = np.asarray(counts) + 2 * np.eye(3, dtype=int)  # every class mapped and observed
    sizes_a = np.asarray(sizes, dtype=float)
    r = assess_error_matrix(cm, sizes, classes=[1, 2, 3])
    n_i = cm.sum(axis=1)
    w = sizes_a / sizes_a.sum()
    users = np.diag(cm) / n_i
    np.testing.assert_allclose(r.classes["users_accuracy"], users)
    np.testing.assert_allclose(  # eq. 6
        r.classes["users_accuracy_se"] ** 2, users * (1 - users) / (n_i - 1), atol=1e-15
    )
    np.testing.assert_allclose(  # eq. 5
        r.overall_accuracy_se**2, np.sum(w**2 * users * (1 - users) / (n_i - 1)), rtol=1e-9
    )
    q = cm / n_i[:, None]
    np.testing.assert_allclose(  # eq. 10
        r.classes["proportion_se"] ** 2,
        np.sum(w[:, None] ** 2 * q * (1 - q) / (n_i[:, None] - 1), axis=0),
        rtol=1e-9,
        atol=1e-18,
    )
    np.testing.assert_allclose(  # eq. 7 (Card 1982)
        r.classes["producers_accuracy_se"] ** 2,
        card_producers_variance(cm, sizes_a),
        rtol=1e-7,  # the two forms differ by rounding (cancellation in s2_y + R2 s2_x - 2R s_xy)
        atol=1e-18,
    )


def test_sample_design_output_is_assessed_directly(tmp_path):
    from .test_sampling import blocky_map

    labels = blocky_map(60, 80, chunk=25)
    sample = xlc.sample_design(labels, n=60, allocation="equal", seed=2)
    truth = labels.values.copy()
    truth[:, :8] = 3  # the map misses some class-3 ground
    sample["reference"] = truth[sample["row"], sample["col"]]
    path = xlc.write_sample(sample, tmp_path / "sample.gpkg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = xlc.assess_sample(path)
    assert r.probability_sample and r.area_unit == "m2"
    map_area = labels.landcover.class_areas()["hectares"]
    np.testing.assert_allclose(r.table()["map area (ha)"], map_area.to_numpy())
    # areas of the whole map add up; the estimate moves area towards class 3
    assert r.classes["area"].sum() == pytest.approx((60 * 80 - 12) * 100.0)  # 12 px nodata
    assert r.classes.loc["3", "area"] > r.classes.loc["3", "map_area"]
    doc = json.loads(r.to_json(tmp_path / "r.json"))
    assert doc["classes"]["3"]["area"] == pytest.approx(r.classes.loc["3", "area"])
    assert json.loads((tmp_path / "r.json").read_text()) == doc


def test_plot_and_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    r = assess_error_matrix(OLOFSSON_COUNTS, OLOFSSON_PIXELS, pixel_area=900.0)
    ax = r.plot()
    assert len(ax.patches) == 8 and "640 sample units" in ax.get_title()
    text = str(r)
    assert "overall accuracy  0.947 ± 0.018" in text and "21,158" in text


# --- errors and warnings ----------------------------------------------------------------------


def test_sample_without_strata_or_inclusion_information():
    sample = stehman_sample().drop(columns="stratum")
    with pytest.raises(SampleDesignError, match="no stratum column 'stratum' and no inclusion"):
        xlc.assess_sample(sample)
    with pytest.raises(SampleDesignError, match="and no equal inclusion probabilities"):
        xlc.assess_sample(sample.assign(inclusion_probability=np.linspace(0.1, 0.2, 40)))


def test_stratum_sizes_missing_or_smaller_than_the_sample():
    with pytest.raises(SampleDesignError, match="stratum sizes are missing"):
        xlc.assess_sample(stehman_sample())
    with pytest.raises(SampleDesignError, match=r"missing for strata \['D'\]"):
        xlc.assess_sample(stehman_sample(), stratum_sizes={"A": 4e4, "B": 3e4, "C": 2e4})
    with pytest.raises(SampleDesignError, match="smaller than the sample in strata C: 10 units"):
        xlc.assess_sample(stehman_sample(), stratum_sizes={**STEHMAN_SIZES, "C": 8})


def test_a_stratum_with_fewer_than_two_units_is_named():
    sample = stehman_sample().iloc[:31]  # stratum D keeps one unit
    with pytest.raises(SampleDesignError, match=r"strata D \(1 unit\) have fewer than two"):
        xlc.assess_sample(sample, stratum_sizes=STEHMAN_SIZES)
    with pytest.raises(SampleDesignError, match=r"E \(0 units\)"):  # a stratum never sampled
        xlc.assess_sample(stehman_sample(), stratum_sizes={**STEHMAN_SIZES, "E": 500})
    # a stratum of one pixel, sampled completely, is fine (no sampling variance)
    one = pd.DataFrame({"stratum": ["E"], "map": ["D"], "reference": ["D"]})
    r = xlc.assess_sample(
        pd.concat([stehman_sample(), one]), stratum_sizes={**STEHMAN_SIZES, "E": 1}
    )
    assert np.isfinite(r.overall_accuracy_se)


def test_reference_labels_outside_the_class_list():
    sample = stehman_sample()
    sample.loc[3, "reference"] = "X"
    with pytest.raises(UnknownClassError, match=r"reference labels hold values \['X'\]"):
        xlc.assess_sample(sample, stratum_sizes=STEHMAN_SIZES, classes=list("ABCD"))
    sample.loc[3, "reference"] = None
    with pytest.raises(SampleDesignError, match=r"1 unit.* no reference label"):
        xlc.assess_sample(sample, stratum_sizes=STEHMAN_SIZES)


def test_training_chips_are_not_a_probability_sample():
    chips = stehman_sample().assign(chip=range(40), nodata_frac=0.0)
    with pytest.warns(NonProbabilitySampleWarning, match="training/validation chips"):
        r = xlc.assess_sample(chips, stratum_sizes=STEHMAN_SIZES)
    assert not r.probability_sample
    assert str(r).startswith("NOT A PROBABILITY SAMPLE")
    assert json.loads(r.to_json())["probability_sample"] is False
    split = stehman_sample().assign(split=["val"] * 40)
    with pytest.warns(NonProbabilitySampleWarning, match="training/validation chips"):
        xlc.assess_sample(split, stratum_sizes=STEHMAN_SIZES)


def test_chips_objects_are_refused(tiny_package):
    from ..conftest import make_image

    img = make_image(64, 64)
    labels = xlc.predict(img, tiny_package)
    chips = xlc.sample_chips(img, labels, size=32, stride=32)
    with pytest.raises(SampleDesignError, match="not a probability sample"):
        xlc.assess_sample(chips)


def test_marked_and_missing_inclusion_probabilities_warn():
    marked = stehman_sample().assign(design="purposive")
    with pytest.warns(NonProbabilitySampleWarning, match="marked as 'purposive'"):
        xlc.assess_sample(marked, stratum_sizes=STEHMAN_SIZES)
    pi = np.full(40, 10 / 40_000)
    pi[5] = np.nan
    gappy = stehman_sample().assign(inclusion_probability=pi)
    with pytest.warns(NonProbabilitySampleWarning, match=r"1 unit.* no valid inclusion"):
        xlc.assess_sample(gappy, stratum_sizes=STEHMAN_SIZES)


def test_stratum_sizes_from_inclusion_probabilities_and_geodesic_areas():
    from .test_sampling import blocky_map

    labels = blocky_map(40, 40, chunk=16)
    geo = labels.assign_coords(y=np.linspace(60.0, 59.0, 40), x=np.linspace(10.0, 11.0, 40))
    geo = geo.rio.write_crs("EPSG:4326").rio.write_transform(None)
    geo = geo.rio.write_transform(geo.rio.transform(recalc=True))
    sample = xlc.sample_design(geo, n=60, allocation="equal", seed=1)
    sample["reference"] = sample["map"]  # a perfect map
    full = xlc.assess_sample(sample)
    by_pi = xlc.assess_sample(sample.drop(columns="stratum_pixels"))  # N_h = n_h / pi_h
    np.testing.assert_allclose(by_pi.strata["pixels"], full.strata["pixels"])
    np.testing.assert_allclose(by_pi.classes["area"], full.classes["area"])
    # the map's areas are the strata's geodesic areas; the estimates weigh each unit by its
    # own pixel area (pixels shrink northwards), so they are close but not equal to them
    hectares = geo.landcover.class_areas()["hectares"].to_numpy()
    np.testing.assert_allclose(full.classes["map_area"] / 1e4, hectares, rtol=1e-12)
    np.testing.assert_allclose(full.classes["area"] / 1e4, hectares, rtol=0.02)
    assert full.overall_accuracy == 1.0 and (full.classes["users_accuracy_se"] == 0).all()
