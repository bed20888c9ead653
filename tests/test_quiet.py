"""Quiet kernels for headless runs: no transport warning, no shutdown interrupt, a kernel log."""

from __future__ import annotations

import nbformat
import papermill

from helpers.batch.quiet import QUIET_ENV, quiet_kernel_options

# The kernel stays 0.3 s in the handler of a kernel_info request after replying: papermill's
# shutdown comes right after its last kernel_info reply, so a SIGINT sent on shutdown would
# land there and be logged as "KeyboardInterrupt caught in kernel." (a loaded machine
# widens this window by chance).
SLOW_REPLY = """import time
kernel = get_ipython().kernel
original = kernel.shell_handlers["kernel_info_request"]
async def slow_kernel_info(stream, ident, parent):
    await original(stream, ident, parent)
    time.sleep(0.3)
kernel.shell_handlers["kernel_info_request"] = slow_kernel_info"""
SHOW = """import os
os.write(2, b"a line below Python\\n")
print("level", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))"""


def _run(tmp_path, **options) -> str:
    """Execute the two cells in a fresh kernel; what the notebook printed on stdout."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SLOW_REPLY), nbformat.v4.new_code_cell(SHOW)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "quiet.ipynb"
    nbformat.write(nb, path)
    out = papermill.execute_notebook(
        str(path),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
        **options,
    )
    return "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))


def test_quiet_kernel_says_nothing_on_start_and_shutdown(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    printed = _run(tmp_path, **quiet_kernel_options())
    err = capfd.readouterr().err
    assert "without encryption" not in err
    assert "KeyboardInterrupt" not in err
    assert f"level {QUIET_ENV['TF_CPP_MIN_LOG_LEVEL']}" in printed


def test_a_level_set_by_the_user_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert "level 0" in _run(tmp_path, **quiet_kernel_options())


def test_log_file_takes_the_kernel_output_below_python(tmp_path, capfd):
    log = tmp_path / "kernel.log"
    printed = _run(tmp_path, **quiet_kernel_options(log))
    assert "a line below Python" in log.read_text()
    assert "a line below Python" not in capfd.readouterr().err + printed
    assert "level" in printed  # Python's own output still reaches the notebook.
