"""Quiet kernels for headless runs: ``papermill.execute_notebook(..., **quiet_kernel_options())``.

What a papermill kernel prints on the console, and what removes it at its cause:

- "Kernel is running over TCP without encryption" (ipykernel 7.4, once per kernel): the
  kernel manager provisions CurveZMQ keys (``transport_encryption="auto"``).
- "KeyboardInterrupt caught in kernel." (now and then): ``shutdown_kernel`` signals SIGINT
  before asking the kernel to stop, and papermill shuts down right after the kernel's last
  reply, while it may still be in that request's handler. Its kernels are idle then, so
  no SIGINT is sent while shutting down.
- "failed call to cuInit" (no GPU): TensorFlow logs it as an error, which the notebooks'
  ``TF_CPP_MIN_LOG_LEVEL=2`` lets through; kernels start with 3 unless the caller set it.
- absl's start-up lines (oneDNN, CUDA stub) come while TensorFlow's libraries load, before
  any log level applies. With ``log_file``, the kernel's own stdout and stderr go to that
  file, and output below Python (these lines, LiteRT's notices) no longer enters the
  notebooks; a crash message is then in that file.
"""

from __future__ import annotations

import os

import zmq
from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode, default

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


class QuietKernelManager(AsyncKernelManager):
    """papermill's kernel manager with encrypted transport, no SIGINT on shutdown, TF at 3."""

    log_file = Unicode("", config=True, help="file for the kernel's stdout and stderr")

    @default("transport_encryption")
    def _encryption_default(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"

    async def start_kernel(self, **kw):
        kw["env"] = {**QUIET_ENV, **kw.get("env", os.environ)}
        if not self.log_file:
            return await super().start_kernel(**kw)
        extra = [*kw.pop("extra_arguments", []), "--IPKernelApp.capture_fd_output=False"]
        with open(self.log_file, "ab") as log:  # The kernel keeps its own copy of the file.
            return await super().start_kernel(extra_arguments=extra, stdout=log, stderr=log, **kw)

    async def _async_interrupt_kernel(self) -> None:
        if not self.shutting_down:
            await super()._async_interrupt_kernel()


def quiet_kernel_options(log_file: str | os.PathLike | None = None) -> dict:
    """Keyword arguments of ``papermill.execute_notebook`` for a quiet kernel."""
    options: dict = {"kernel_manager_class": QuietKernelManager}
    if log_file:
        from traitlets.config import Config

        options["config"] = Config({"QuietKernelManager": {"log_file": str(log_file)}})
    return options
