"""Promise: a run configuration is checked whole before anything runs; a typo or a wrong type
is an error that names the setting and the fix, never silently ignored."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xlandcover.augment import AugmentConfig
from xlandcover.cli import main
from xlandcover.config import load_config
from xlandcover.errors import ConfigError
from xlandcover.train import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


@pytest.fixture
def zion():
    """The text of the example Zion configuration."""
    path = EXAMPLES / "zion.toml"
    return path.read_text(), path


def _config(tmp_path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["dubai.toml", "zion.toml"])
def test_the_example_configurations_are_valid(name):
    load_config(EXAMPLES / name)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("[train]", "[trian]", r"unknown section \[trian\]; did you mean \[train\]\?"),
        (
            "max_nodata = 0.2",
            "max_nodat = 0.2",
            r"max_nodat in \[chips\]; did you mean max_nodata\?",
        ),
        (
            "max_minutes = 20",
            "max_minute = 20",
            r"max_minute in \[train\]; did you mean max_minutes",
        ),
        ("seed = 0\n\n[train]", "sed = 0\n\n[train]", r"sed in \[split\]; did you mean seed"),
    ],
)
def test_unknown_sections_and_settings_name_the_nearest_valid_one(tmp_path, zion, old, new, match):
    text, _ = zion
    assert old in text
    with pytest.raises(ConfigError, match=match):
        load_config(_config(tmp_path, text.replace(old, new, 1)))


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (
            "seed = 0\n\n[output]",
            'epochs = "sixty"\n\n[output]',
            r"\[train\] epochs = 'sixty' should be an integer",
        ),
        (
            "max_minutes = 20",
            "max_minutes = true",
            r"\[train\] max_minutes = True should be a number",
        ),
        ("max_nodata = 0.2", "size = 12.8", r"\[chips\] size = 12.8 should be an integer"),
        (
            "seed = 0\n\n[output]",
            'loss = ["combo"]\n\n[output]',
            r"\[train\] loss = \['combo'\] should be a string",
        ),
        ("fractions = [0.7, 0.15, 0.15]", 'fractions = [0.7, "a"]', r"fractions\[1\] = 'a'"),
        ("chunks = 512", 'chunks = "512"', r"\[data\] chunks = '512' should be an integer"),
        ('name = "water"', "label = 1", r"unknown setting label in \[classes\]\[0\]"),
    ],
)
def test_wrong_types_are_errors_naming_the_type_expected(tmp_path, zion, old, new, match):
    text, _ = zion
    assert old in text
    with pytest.raises(ConfigError, match=match):
        load_config(_config(tmp_path, text.replace(old, new, 1)))


def test_malformed_toml_is_an_error_naming_the_file_and_line(tmp_path, zion):
    text, _ = zion
    path = _config(tmp_path, text.replace("max_minutes = 20", "max_minutes = = 20"))
    with pytest.raises(ConfigError, match=r"run\.toml is not valid TOML: .*line \d+"):
        load_config(path)


def test_cli_train_reports_a_bad_configuration_plainly(tmp_path, zion, caplog):
    text, _ = zion
    path = _config(tmp_path, text.replace("[train]", "[trian]"))
    assert main(["train", str(path)]) == 1
    assert "did you mean [train]?" in caplog.text


def test_every_training_setting_is_valid_without_a_list_to_keep_in_step():
    """Valid keys come from the dataclasses: each field of TrainConfig (and AugmentConfig)
    with its default value passes, so a field added there is valid in files at once."""
    from xlandcover.config import check_config

    base = {"data": {"images": "a.tif", "labels": "b.tif"}}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        if value is None:
            continue  # TOML has no null: leaving a setting out is how to say None
        if isinstance(value, AugmentConfig):
            value = dataclasses.asdict(value)
        check_config({**base, "train": {f.name: value}})
    check_config({**base, "train": {"augment": False}})
