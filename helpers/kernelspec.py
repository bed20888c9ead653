"""Quiet the course's Jupyter kernel where it starts (run by ``make setup``).

TensorFlow's C++ start-up lines (absl, oneDNN, cuInit, the converter's MLIR notes) are
written to the process's stderr before Python can filter them. ``TF_CPP_MIN_LOG_LEVEL``
(set by ``ipykernel install --env``) hides most; turning off ipykernel's capture of
file-descriptor output keeps the rest in the kernel's terminal, out of the notebooks."""

import json
import sys
from pathlib import Path

FLAG = "--IPKernelApp.capture_fd_output=False"


def main(name: str = "tl-course") -> Path:
    path = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name / "kernel.json"
    spec = json.loads(path.read_text())
    if FLAG not in spec["argv"]:
        spec["argv"].append(FLAG)
    path.write_text(json.dumps(spec, indent=1))
    return path


if __name__ == "__main__":
    print(f"kernel quieted: {main()}")
