"""Where jobs run: the choice between Dask-CUDA and a CPU local cluster, tested with fakes."""

import sys
import types
from typing import ClassVar

import pytest

from xlandcover.jobs import _cluster as cluster


class FakeCUDACluster:
    """Records how dask_cuda.LocalCUDACluster was asked for."""

    made: ClassVar[list[dict]] = []

    def __init__(self, **kwargs):
        FakeCUDACluster.made.append(kwargs)
        self.kwargs = kwargs


@pytest.fixture
def fake_dask_cuda(monkeypatch):
    module = types.ModuleType("dask_cuda")
    module.LocalCUDACluster = FakeCUDACluster  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_cuda", module)
    FakeCUDACluster.made.clear()
    return FakeCUDACluster


def test_one_dask_cuda_worker_per_gpu(monkeypatch, fake_dask_cuda):
    monkeypatch.setattr(cluster, "gpu_count", lambda: 4)
    made = cluster._cuda_cluster()
    assert isinstance(made, FakeCUDACluster)
    assert made.kwargs["n_workers"] == 4
    assert made.kwargs["threads_per_worker"] == cluster.CUDA_THREADS_PER_WORKER
    # fewer workers than GPUs when asked; never more workers than GPUs
    assert cluster._cuda_cluster(n_workers=2).kwargs["n_workers"] == 2
    assert cluster._cuda_cluster(n_workers=9, threads_per_worker=3).kwargs == {
        "n_workers": 4,
        "threads_per_worker": 3,
        "dashboard_address": ":0",
    }


def test_no_dask_cuda_without_gpus(monkeypatch, fake_dask_cuda):
    monkeypatch.setattr(cluster, "gpu_count", lambda: 0)
    assert cluster._cuda_cluster() is None
    assert fake_dask_cuda.made == []


def test_gpus_without_dask_cuda_fall_back_to_a_local_cluster(monkeypatch, caplog):
    monkeypatch.setattr(cluster, "gpu_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import raises ImportError
    with caplog.at_level("WARNING", logger="xlandcover"):
        assert cluster._cuda_cluster() is None
    assert "pip install 'xlandcover[cuda]'" in caplog.text


def test_gpu_count_here():
    from xlandcover._torch import torch

    want = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert cluster.gpu_count() == want


def test_local_uses_the_cuda_cluster_when_there_is_one(monkeypatch):
    """client_for('local') takes the Dask-CUDA branch whenever _cuda_cluster gives a cluster
    (here a small in-process one stands in for it); 'inprocess' never asks for one."""
    from distributed import LocalCluster

    asked = []

    def stand_in(**kwargs):
        asked.append(kwargs)
        return LocalCluster(n_workers=1, threads_per_worker=1, processes=False)

    monkeypatch.setattr(cluster, "_cuda_cluster", stand_in)
    with cluster.client_for("local", n_workers=3) as client:
        assert len(client.scheduler_info()["workers"]) == 1
    assert asked == [{"n_workers": 3, "threads_per_worker": None}]
    with cluster.client_for("inprocess"):
        pass
    assert len(asked) == 1
