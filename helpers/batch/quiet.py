"""Quiet kernels for headless runs: ``papermill.execute_notebook(..., **quiet_kernel_options())``.

CurveZMQ keys (no "running over TCP without encryption"), no SIGINT on shutdown (no
"KeyboardInterrupt caught in kernel."), ``TF_CPP_MIN_LOG_LEVEL=3`` unless set (no "failed call
to cuInit"), and with a log file, what the kernel writes below Python (absl, LiteRT) goes there."""

from __future__ import annotations

import os

import zmq
from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode, default
from traitlets.config import Config

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
    config = Config({"QuietKernelManager": {"log_file": str(log_file or "")}})
    return {"kernel_manager_class": QuietKernelManager, "config": config}
