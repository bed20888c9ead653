"""Batch machinery: ``runner`` (headless runs), ``sweep`` (Optuna sweeps), ``preflight``
(parameter and data checks), ``quiet`` (quiet papermill kernels), ``bench`` (figures)."""
