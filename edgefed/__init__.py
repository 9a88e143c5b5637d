"""edgefed: a discrete-event simulator of federated fine-tuning of language models on edge devices.

This folder is the application (scenario files, building and running a run, its results, the
command line and the Python API); the repository's folders ``simulator/`` (the SimPy model),
``algorithms/`` and ``devices/`` are installed as ``edgefed.simulator``, ``edgefed.algorithms`` and
``edgefed.devices``, which never import the application. Nothing else is installed at top level. The Python API
(``run``, ``compare``, ``load``, ``Result``, ``RunDirError``), ``ScenarioError`` (what bad input raises),
``CompareFailed`` and ``__version__`` load on first use (PEP 562), so importing any part of edgefed does not import
the API and all it runs.
"""
__all__ = ["CompareFailed", "Result", "RunDirError", "ScenarioError", "__version__", "compare", "load", "run"]
_API = {"Result", "RunDirError", "compare", "load", "run"}


def __getattr__(name: str):
    if name in _API:
        import edgefed.api

        return getattr(edgefed.api, name)
    if name == "ScenarioError":
        from edgefed.scenario import ScenarioError

        return ScenarioError
    if name == "CompareFailed":
        from edgefed.comparison import CompareFailed

        return CompareFailed
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("edgefed")
        except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
            return "0+unknown"
    raise AttributeError(f"module 'edgefed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
