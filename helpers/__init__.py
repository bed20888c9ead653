"""Shared code of the transfer-learning course: what is not the lesson (the notebooks write the
Keras and LiteRT code), one job per module, as README.md's "Layout" lists them. The subpackage
``batch`` runs the notebooks: runner, sweeps, preflight checks, benchmarks."""

__version__ = "0.1.0"
