"""edgefed: a discrete-event simulator of federated fine-tuning of language models on edge devices.

The repository's top-level folders ``simulator/``, ``algorithms/`` and ``devices/`` are installed as
``edgefed.simulator``, ``edgefed.algorithms`` and ``edgefed.devices``; nothing else is installed at
top level.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgefed")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
    __version__ = "0+unknown"

from edgefed.api import Result, RunDirError, load, run  # noqa: E402

__all__ = ["Result", "RunDirError", "__version__", "load", "run"]
