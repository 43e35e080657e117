"""Where batch jobs run: an existing Dask cluster, a local one, or Dask-CUDA workers.

Importing this subpackage imports ``distributed`` (``import xlandcover`` does not).
"""

from ._cluster import TorchThreads, client_for, scheduler_address

__all__ = ["TorchThreads", "client_for", "scheduler_address"]
