"""What runs where in a converted LiteRT model (notebook 05 writes the converters itself).

:func:`delegation_report` says which ops LiteRT's default CPU delegate, XNNPACK, runs and
which fall back to its built-in kernels; each switch between the two costs time. XNNPACK
takes MobileNetV3's ``HARD_SWISH`` in float only, so in an INT8 MobileNetV3 every
hard-swish runs outside it (MobileNetV3Small: 18 ops, 19 partitions) and INT8 ends up
slower than float32 on x86."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pandas as pd

#: File name of each conversion variant, in the order the course presents them.
FILE_NAMES = {"float32": "model.tflite", "dynamic": "model_dynamic.tflite"}
FILE_NAMES |= {"int8": "model_qt.tflite", "float16": "model_fp16.tflite"}
VARIANTS = tuple(FILE_NAMES)
#: The node name LiteRT gives a delegate's kernel in ``_get_ops_details``.
_DELEGATE_NODE = "DELEGATE"


def _interpreter(source: str | os.PathLike | bytes, num_threads: int = 2):
    """An allocated interpreter of a path or the model's bytes, with LiteRT's default delegate."""
    from ai_edge_litert.interpreter import Interpreter

    where = "model_content" if isinstance(source, (bytes, bytearray)) else "model_path"
    value = bytes(source) if where == "model_content" else str(source)
    interpreter = Interpreter(**{where: value}, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def _delegated(ops: list[dict]) -> set[int]:
    """Indices of the original nodes that the ``DELEGATE`` nodes replaced.

    Each delegate node's inputs and outputs are its partition's boundary tensors: walking
    back from its outputs to its inputs through the original nodes gives the nodes it runs."""
    original = {op["index"]: op for op in ops if op["op_name"] != _DELEGATE_NODE}
    producer = {int(t): i for i, op in original.items() for t in op["outputs"]}
    covered: set[int] = set()
    for delegate in (op for op in ops if op["op_name"] == _DELEGATE_NODE):
        boundary = {int(t) for t in delegate["inputs"]}
        stack, seen = [int(t) for t in delegate["outputs"]], set()
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if tensor in boundary or tensor in seen or node is None or node in covered:
                continue
            seen.add(tensor)
            covered.add(node)
            stack.extend(int(t) for t in original[node]["inputs"] if int(t) >= 0)
    return covered


def delegation_report(tflite_path: str | os.PathLike | bytes, num_threads: int = 2) -> pd.DataFrame:
    """Which ops of a LiteRT model XNNPACK runs and which fall back to built-in kernels.

    Returns:
        One row per op type: ``count``, ``delegated``, ``not_delegated`` and the
        ``dtypes`` of the non-delegated ops' outputs; ``.attrs`` holds ``nodes``,
        ``delegated_nodes``, ``partitions`` (delegate kernels: one means a single switch
        into XNNPACK) and ``not_delegated`` (``{op: count}``)."""
    ops = _interpreter(tflite_path, num_threads=num_threads)._get_ops_details()
    covered = _delegated(ops)
    rows: dict[str, dict[str, Any]] = {}
    for op in ops:
        if op["op_name"] == _DELEGATE_NODE:
            continue
        row = rows.setdefault(op["op_name"], {"count": 0, "delegated": 0, "dtypes": set()})
        row["count"] += 1
        if op["index"] in covered:
            row["delegated"] += 1
        else:
            row["dtypes"].update(np.dtype(t).name for t in op["result_types"])
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["count", "delegated", "dtypes"])
    table.index.name = "op"
    table.insert(2, "not_delegated", table["count"] - table["delegated"])
    table["dtypes"] = table["dtypes"].map(lambda s: ", ".join(sorted(s)))
    table = table.sort_values(["not_delegated", "count"], ascending=False)
    outside = table.loc[table["not_delegated"] > 0, "not_delegated"]
    table.attrs = {"nodes": int(table["count"].sum()), "delegated_nodes": len(covered)}
    table.attrs["partitions"] = sum(op["op_name"] == _DELEGATE_NODE for op in ops)
    table.attrs["not_delegated"] = {op: int(n) for op, n in outside.items()}
    return table


def non_delegated_summary(tflite_path: str | os.PathLike | bytes) -> str:
    """One line: "all 109 ops in XNNPACK (1 partition)" or "HARD_SWISH x18 outside ..."."""
    attrs = delegation_report(tflite_path).attrs
    if not attrs["not_delegated"]:
        return f"all {attrs['nodes']} ops in XNNPACK ({attrs['partitions']} partition)"
    listed = ", ".join(f"{op} x{n}" for op, n in attrs["not_delegated"].items())
    return f"{listed} outside XNNPACK ({attrs['partitions']} partitions)"


def _layer(tensor: str) -> str:
    """A tensor's layer, readably: "block6d_project_bn" for "m_1/b_1/block6d_project_bn_1/
    batchnorm/add_1;...", "head" for ".../head_1/MatMul"; other names as they are."""
    parts = [p for p in tensor.split(";")[0].split("/")[:-1] if p != "batchnorm"]
    return re.sub(r"_\d+$", "", parts[-1]) if parts else tensor


def min_max_ranges(float_path, samples: list[dict]) -> dict:
    """Each tensor's min and max over all ``samples`` (``{input name: array}`` each), for
    ``Quantizer.quantize``: LiteRT Quantizer's calibrator with a running min/max, not the
    moving average of per-sample ranges that ``Quantizer.calibrate`` keeps (notebook 05 writes
    this out and shows why a sigmoid head needs it)."""
    from litert_quantizer import calibrator
    from litert_quantizer.utils import qsv_utils

    mode = calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS
    update = qsv_utils.min_max_update
    recorder = calibrator.CalibrationInterpreter(str(float_path), mode=mode, qsv_update_func=update)
    signature = recorder.get_signature_runner("serving_default")
    for sample in samples:
        signature(**sample)
    return recorder.get_calibration_results()


def _signal_power(_quantized: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(np.square(reference, dtype=np.float64)))


def layer_errors(float_path, quant_path, samples: list[dict], num_threads: int = 2) -> pd.DataFrame:
    """How far each tensor of a quantized model is from the float model's, along the network.

    LiteRT Quantizer's validator (``model_validator.compare_model``, what ``Quantizer.validate``
    calls) runs both models on ``samples`` (``{input name: array}`` each) and compares every
    tensor of the same name, averaging over samples: here the squared error and the float
    signal's power, so ``snr_db = 10 log10(power / mse)`` is pooled over all samples (the
    library's own SNR averages per-sample ratios, which a one-number tensor such as a sigmoid
    head's makes meaningless). Errors accumulate from the input on, so what an op itself adds
    is ``noise_added``: its noise-to-signal ratio minus that of its worst input.

    Returns:
        One row per op in the float model's order: ``op``, ``layer``, ``tensor``, ``snr_db``,
        ``noise_added`` and ``mse``.
    """
    from litert_quantizer import model_validator
    from litert_quantizer.utils import validation_utils as vu

    metrics = [vu.ValidationErrorMetric.MSE, vu.ValidationErrorMetric.SNR]
    functions = [vu.mean_squared_difference, _signal_power]  # The SNR slot holds the power.
    reference, target = (open(path, "rb").read() for path in (float_path, quant_path))
    data = {"serving_default": samples}
    compare = model_validator.compare_model
    compared = compare(reference, target, data, metrics, functions, num_threads=num_threads)
    results = compared.get_all_tensor_results()
    mse = {name: r["mse"] for name, r in results.items()}
    interpreter = _interpreter(reference, num_threads)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != _DELEGATE_NODE]
    # Activations only (what ops produce, and the inputs): weights are not where errors flow.
    flowing = {names[int(t)] for op in ops for t in op["outputs"]}
    flowing |= {d["name"] for d in interpreter.get_input_details()}
    snr = {
        name: min(100.0, 10 * np.log10(max(r["snr"], 1e-30) / max(r["mse"], 1e-30)))
        for name, r in results.items()
        if name in flowing
    }  # 100 dB: no error.
    rows = []
    for op in ops:
        if (output := names[int(op["outputs"][0])]) not in snr:
            continue
        inputs = [snr[names[int(t)]] for t in op["inputs"] if names.get(int(t)) in snr]
        added = 10 ** (-snr[output] / 10) - 10 ** (-min(inputs, default=100.0) / 10)
        row = {"op": op["op_name"], "layer": _layer(output), "tensor": output}
        rows.append(row | {"snr_db": snr[output], "noise_added": added, "mse": mse[output]})
    return pd.DataFrame(rows).rename_axis("position")
