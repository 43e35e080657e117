"""Losses and schedules by name, and adding your own."""

import numpy as np
import pytest

from xlandcover.errors import TrainingSettingsError, UnknownArchitectureError
from xlandcover.model import NODATA_LABEL
from xlandcover.training import (
    LOSSES,
    SCHEDULES,
    _losses,
    _train,
    make_loss,
    register_loss,
    register_schedule,
)


def test_every_built_in_loss_ignores_unlabelled_targets():
    from xlandcover._torch import torch

    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    for name in LOSSES:
        loss = make_loss(name, n_classes=3)
        masked = target.clone()
        masked[:, :4] = NODATA_LABEL
        changed = logits.clone()
        changed[:, :, :4] += 5.0  # logits of ignored pixels must not matter
        assert torch.isclose(loss(logits, masked), loss(changed, masked)), name


def test_a_registered_loss_is_found_by_name(monkeypatch):
    from xlandcover._torch import torch

    monkeypatch.setattr(_losses, "LOSSES", dict(LOSSES))
    made = {}

    def factory(*, n_classes, weight):
        made.update(n_classes=n_classes, weight=weight)
        return torch.nn.CrossEntropyLoss(ignore_index=NODATA_LABEL)

    _losses.register_loss("mine", factory)
    loss = _losses.make_loss("Mine", n_classes=4, class_weights=np.ones(4))
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and made["n_classes"] == 4
    assert made["weight"].tolist() == [1.0] * 4
    with pytest.raises(TrainingSettingsError, match="exists"):
        _losses.register_loss("mine", factory)
    with pytest.raises(UnknownArchitectureError, match=r"'ce', 'combo', 'dice', 'focal', 'mine'"):
        _losses.make_loss("nope", n_classes=2)
    with pytest.raises(TrainingSettingsError, match="3 class weights for 4 classes"):
        _losses.make_loss("ce", n_classes=4, class_weights=np.ones(3))


def test_a_registered_schedule_is_used_by_name(monkeypatch):
    monkeypatch.setattr(_train, "SCHEDULES", dict(SCHEDULES))
    _train.register_schedule("half", lambda t: 0.5)
    assert _train.SCHEDULES["half"](0.3) == 0.5
    with pytest.raises(TrainingSettingsError, match="exists"):
        _train.register_schedule("poly", lambda t: 1.0)
    assert register_schedule is _train.register_schedule and register_loss is not None
