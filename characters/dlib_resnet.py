"""dlib's face-recognition ResNet, read from its model file and run with numpy.

dlib's Python wheel is built without BLAS, so its network spends about 80 ms on one 150 px
face chip on this project's 2-core machine: most of what scoring a frame costs. The same
network as numpy matrix products (OpenBLAS) gives the same 128 values (to float32 rounding) in
a fraction of that. The weights are read from the very file dlib loads
(`dlib_face_recognition_resnet_model_v1.dat` from the face-recognition-models package), so
nothing new ships and the calibration in consistency.py still holds; tests compare both.

The file is dlib's own serialisation of `anet_type` from dlib's dnn_face_recognition_ex.cpp:
nested layers, each written as its version, its subnetwork, then its own parameters. Reading
it walks the stream in that order and checks every layer's name and shape against the
architecture below, so a different file fails loudly instead of computing nonsense.

    input 150x150 RGB, (pixel - channel mean) / 256
    con 7x7/2 (32) -> affine -> relu -> max pool 3x3/2
    3 x res(32), res_down(64) + 3 x res(64), res_down(128) + 2 x res(128),
    res_down(256) + 2 x res(256), res_down(256)
    mean over the picture -> fc 128 (no bias)

    res(N)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    res_down(N) = relu(avgpool2x2/2(x) + the same block with its first con at stride 2)

where the two branches of res_down differ in size, dlib adds them aligned at the top-left
corner, zero-padded (channels too); that is reproduced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHIP_SIZE = 150
# (channels, blocks, the first block downsamples), input to output.
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class ModelFormatError(ValueError):
    """The file is not the network this module knows."""


class _Reader:
    """dlib's serialisation primitives (dlib/serialize.h)."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.at = 0

    def take(self, count: int) -> memoryview:
        if self.at + count > len(self.data):
            raise ModelFormatError("the model file ends too early")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size, negative = control & 0x0F, control & 0x80
        if size > 8 or control & 0x70:
            raise ModelFormatError(f"bad integer control byte {control:#x} at {self.at}")
        value = int.from_bytes(self.take(size), "little")
        return -value if negative else value

    def string(self) -> str:
        raw = bytes(self.take(self.integer()))
        if not raw.isascii():
            raise ModelFormatError(f"expected a name at {self.at - len(raw)}")
        return raw.decode("ascii")

    def boolean(self) -> bool:
        char = self.take(1)[0]
        if char not in (ord("0"), ord("1")):
            raise ModelFormatError(f"bad boolean at {self.at - 1}")
        return char == ord("1")

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise ModelFormatError(f"unknown tensor version at {self.at}")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            raise ModelFormatError(f"bad tensor shape {shape}")
        values = np.frombuffer(self.take(4 * int(np.prod(shape))), dtype="<f4")
        return values.reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        if self.integer() != 1:
            raise ModelFormatError(f"unknown alias tensor version at {self.at}")
        return tuple(self.integer() for _ in range(4))

    def expect(self, *names: str) -> str:
        name = self.string()
        if name not in names:
            raise ModelFormatError(f"expected layer {' or '.join(names)}, found {name!r}")
        return name


@dataclass(frozen=True)
class _Conv:
    filters: np.ndarray  # (in * kh * kw, out): for the im2col product (strided)
    taps: np.ndarray  # (kh * kw, out, in): one product per filter tap (stride 1)
    bias: np.ndarray
    size: int
    stride: int
    padding: int

    @property
    def outputs(self) -> int:
        return self.bias.shape[0]


@dataclass(frozen=True)
class _Affine:
    gamma: np.ndarray
    beta: np.ndarray


def _read_conv(reader: _Reader) -> _Conv:
    version = reader.expect("con_4", "con_5", "con_6")
    params = reader.tensor().reshape(-1)
    outputs, rows, cols = reader.integer(), reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    filter_shape, bias_shape = reader.alias(), reader.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    use_bias = reader.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6":
        reader.boolean()  # use_relu: never set in this network
    if rows != cols or stride_y != stride_x or pad_y != pad_x or filter_shape[0] != outputs:
        raise ModelFormatError("unexpected convolution geometry")
    count = int(np.prod(filter_shape))
    filters = params[:count].reshape(filter_shape)  # out, in, kh, kw
    bias = params[count : count + outputs] if use_bias else np.zeros(outputs, np.float32)
    if bias_shape[1] != outputs:
        raise ModelFormatError("unexpected convolution bias")
    matrix = np.ascontiguousarray(filters.reshape(outputs, -1).T)
    taps = np.ascontiguousarray(filters.transpose(2, 3, 0, 1).reshape(rows * cols, outputs, -1))
    return _Conv(matrix, taps, bias.copy(), rows, stride_y, pad_y)


def _read_affine(reader: _Reader) -> _Affine:
    version = reader.expect("affine_", "affine_2")
    params = reader.tensor().reshape(-1)
    gamma_shape, _beta_shape = reader.alias(), reader.alias()
    reader.integer()  # mode: convolutional (per channel)
    if version == "affine_2" and reader.boolean():
        raise ModelFormatError("a disabled affine layer")
    channels = int(np.prod(gamma_shape))
    return _Affine(params[:channels].copy(), params[channels : 2 * channels].copy())


def _read_relu(reader: _Reader) -> None:
    if reader.expect("relu_", "relu_2") == "relu_2" and reader.boolean():
        raise ModelFormatError("a disabled relu layer")


def _read_pool(reader: _Reader, name: str) -> tuple[int, int, int]:
    reader.expect(name)
    rows, cols, stride_y, stride_x = (reader.integer() for _ in range(4))
    pad_y, pad_x = reader.integer(), reader.integer()
    if rows != cols or stride_y != stride_x or pad_y != pad_x:
        raise ModelFormatError(f"unexpected {name} geometry")
    return rows, stride_y, pad_y


def _layer_tail(reader: _Reader, version: int, *, is_input: bool) -> None:
    """What dlib's add_layer writes after a layer's parameters (training state: skipped)."""
    reader.boolean()  # this_layer_setup_called
    reader.boolean()  # gradient_input_is_stale
    reader.boolean()  # get_output_and_gradient_input_disabled
    reader.tensor()  # x_grad
    reader.tensor()  # cached_output
    reader.tensor()  # params_grad, or grad_final for the layer on the input
    if is_input and version >= 3:
        reader.integer()  # sample expansion factor


@dataclass(frozen=True)
class _Block:
    first: _Conv
    first_affine: _Affine
    second: _Conv
    second_affine: _Affine
    downsample: bool


class FaceResNet:
    """The network, loaded once per process (about 0.2 s)."""

    def __init__(self, data: bytes):
        reader = _Reader(data)
        # Every layer's version comes first (outermost first), then the layers themselves
        # from the input up, each with its parameters.
        if reader.integer() != 1:
            raise ModelFormatError("not a dlib loss layer")
        if reader.expect("loss_metric_", "loss_metric_2") == "loss_metric_2":
            reader.real(), reader.real()  # margin, distance threshold: training only
        versions = []
        while True:
            mark = reader.at
            value = reader.integer()
            if value > 3:  # the length of the input layer's name: the versions are over
                reader.at = mark
                break
            versions.append(value)
        reader.expect("input_rgb_image_sized")
        self.mean = np.array([reader.real() for _ in range(3)], np.float32).reshape(3, 1, 1)
        if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
            raise ModelFormatError("the network does not take 150 px chips")
        layer_versions = [v for v in versions if v != 1]  # 1: tags and skips, which hold nothing
        tails = iter(reversed(layer_versions))

        def tail(is_input: bool = False) -> None:
            _layer_tail(reader, next(tails), is_input=is_input)

        self.stem = _read_conv(reader)
        tail(is_input=True)
        self.stem_affine = _read_affine(reader)
        tail()
        _read_relu(reader)
        tail()
        self.stem_pool = _read_pool(reader, "max_pool_2")
        tail()
        self.blocks: list[_Block] = []
        for channels, count, downsample in LEVELS:
            for index in range(count):
                down = downsample and index == 0
                first = _read_conv(reader)
                tail()
                first_affine = _read_affine(reader)
                tail()
                _read_relu(reader)
                tail()
                second = _read_conv(reader)
                tail()
                second_affine = _read_affine(reader)
                tail()
                if down:
                    if _read_pool(reader, "avg_pool_2") != (2, 2, 0):
                        raise ModelFormatError("unexpected shortcut pooling")
                    tail()
                reader.expect("add_prev_")
                tail()
                _read_relu(reader)
                tail()
                if first.outputs != channels or first.stride != (2 if down else 1):
                    raise ModelFormatError("unexpected residual block")
                self.blocks.append(_Block(first, first_affine, second, second_affine, down))
        if _read_pool(reader, "avg_pool_2")[0] != 0:
            raise ModelFormatError("expected the global average pooling")
        tail()
        reader.expect("fc_2", "fc_3")
        outputs, inputs = reader.integer(), reader.integer()
        weights = reader.tensor().reshape(-1)
        self.fc = weights[: inputs * outputs].reshape(inputs, outputs).copy()

    def embed(self, chip: np.ndarray) -> np.ndarray:
        """The 128-d descriptor of one aligned RGB chip (150 x 150 x 3, uint8)."""
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"a face chip is {CHIP_SIZE}x{CHIP_SIZE} RGB, not {chip.shape}")
        x = (np.moveaxis(chip.astype(np.float32), 2, 0) - self.mean) / 256.0
        x = _affine_relu(_convolve(x, self.stem), self.stem_affine)
        size, stride, padding = self.stem_pool
        x = _max_pool(x, size, stride, padding)
        for block in self.blocks:
            y = _affine_relu(_convolve(x, block.first), block.first_affine)
            y = _affine(_convolve(y, block.second), block.second_affine)
            shortcut = _avg_pool2(x) if block.downsample else x
            x = np.maximum(_add_aligned(y, shortcut), 0.0)
        pooled = x.mean(axis=(1, 2), dtype=np.float32)
        return (pooled @ self.fc).astype(np.float32)


def _convolve(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """Cross-correlation with zero padding, as dlib's img2col: channels, rows, columns."""
    if conv.stride == 1:
        return _convolve_by_taps(x, conv)
    channels, height, width = x.shape
    p, k, s = conv.padding, conv.size, conv.stride
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p)))
    out_h, out_w = 1 + (height + 2 * p - k) // s, 1 + (width + 2 * p - k) // s
    sc, sh, sw = x.strides
    windows = np.lib.stride_tricks.as_strided(
        x, (out_h, out_w, channels, k, k), (sh * s, sw * s, sc, sh, sw), writeable=False
    )
    columns = windows.reshape(out_h * out_w, channels * k * k)
    out = columns @ conv.filters + conv.bias
    return np.ascontiguousarray(out.T).reshape(-1, out_h, out_w)


def _convolve_by_taps(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """Stride 1 without copying windows: the padded picture is laid out flat, so the input
    under each filter tap is one contiguous slice; the columns that wrap around a row edge
    are computed and dropped. Two to three times quicker than im2col at these sizes."""
    channels, height, width = x.shape
    p, k = conv.padding, conv.size
    row = width + 2 * p
    out_h, out_w = height + 2 * p - k + 1, row - k + 1
    flat = np.zeros((channels, (height + 2 * p) * row + k - 1), np.float32)
    flat[:, : (height + 2 * p) * row].reshape(channels, -1, row)[
        :, p : p + height, p : p + width
    ] = x
    span = out_h * row
    out = conv.taps[0] @ flat[:, :span]
    for tap in range(1, k * k):
        start = (tap // k) * row + tap % k
        out += conv.taps[tap] @ flat[:, start : start + span]
    return out.reshape(-1, out_h, row)[:, :, :out_w] + conv.bias[:, None, None]


def _affine(x: np.ndarray, affine: _Affine) -> np.ndarray:
    return x * affine.gamma[:, None, None] + affine.beta[:, None, None]


def _affine_relu(x: np.ndarray, affine: _Affine) -> np.ndarray:
    return np.maximum(_affine(x, affine), 0.0)


def _max_pool(x: np.ndarray, size: int, stride: int, padding: int) -> np.ndarray:
    """dlib's max pooling: windows clipped to the picture (padding never wins)."""
    _channels, height, width = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    out_h = 1 + (height + 2 * padding - size) // stride
    out_w = 1 + (width + 2 * padding - size) // stride
    out = None
    for dy in range(size):
        for dx in range(size):
            tap = x[:, dy : dy + stride * out_h : stride, dx : dx + stride * out_w : stride]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 windows at stride 2, no padding: a trailing odd row or column is left out."""
    channels, height, width = x.shape
    h, w = height // 2 * 2, width // 2 * 2
    blocks = x[:, :h, :w].reshape(channels, h // 2, 2, w // 2, 2)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


def _add_aligned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's add_prev: the larger of each dimension, both aligned at the top-left corner."""
    if a.shape == b.shape:
        return a + b
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out
