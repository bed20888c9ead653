"""Shared code of the transfer-learning course: what is not the lesson.

The notebooks write the Keras and LiteRT code; these modules hold the rest, one job each:
``config`` (paths, profiles), ``runs`` (run records), ``demo_data`` (the offline demo
dataset), ``checks`` (file validation), ``duplicates``, ``splits``, ``balance`` (size rules,
resampling), ``dataset`` (manifest, tf.data), ``backbones`` (registry, weights policy),
``lite0`` (EfficientNet-Lite0 read offline), ``augmentation``, ``training`` (diagnosis, phase
files), ``quantization``, ``verification`` (LiteRT batches and shipping files),
``antispoofing`` (ISO/IEC 30107-3 rates), ``stats`` (exact intervals, paired tests,
verdicts), ``claims`` (the scoreboard), ``plots``, ``samples``.
The subpackage ``batch`` runs the notebooks: runner, sweeps, preflight checks, benchmarks.
"""

__version__ = "0.1.0"
