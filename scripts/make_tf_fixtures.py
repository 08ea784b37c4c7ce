"""Build the int8 .tflite test fixtures with TensorFlow's own converter.

Why: eedge reads "standard" .tflite files, and the only honest source of
standard files is Google's converter, which picks op versions, options,
fusions and quantization rules eedge's own writer never would. These files
pin what that converter emits for common Keras layers so eedge's reader, int8
reference and C runtime are tested against foreign files.

TensorFlow is NOT an eedge dependency. Run this in a throwaway venv:

    work=$(mktemp -d)
    python3.11 -m venv "$work/tfvenv" && "$work/tfvenv/bin/pip" install tensorflow-cpu numpy
    .venv/bin/python -c "import sys, numpy as np; from sklearn.datasets import load_digits; \
        d = load_digits(); np.savez(sys.argv[1], x=d.images.astype('float32'), \
        y=d.target.astype('int64'))" "$work/digits.npz"
    "$work/tfvenv/bin/python" scripts/make_tf_fixtures.py "$work/digits.npz" tests/fixtures/tflite

It rewrites tests/fixtures/tflite/SHA256SUMS; then refresh the op dump in that
folder's README (``.venv/bin/python tests/frontends/test_tf_converter_fixtures.py``)
and CONVERTER_OPS in that test module.
Seeds are fixed; bytes can still change across TensorFlow versions.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # oneDNN segfaulted training here (TF 2.21)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras
layers = keras.layers

SEED = 0
STEPS = 60          # training steps per model: seconds, enough to move weights off init
CALIBRATION = 128   # representative samples


def digits(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits scaled to [0, 1], nearest-upsampled to size x size, NHWC."""
    data = np.load(path)
    x = data["x"] / 16.0
    factor = size // 8
    if factor > 1:
        x = np.kron(x, np.ones((1, factor, factor), np.float32))
    return x[..., None].astype(np.float32), data["y"].astype(np.int64)


# ---------------------------------------------------------------- building blocks
def hard_swish(x: tf.Tensor) -> tf.Tensor:
    """MobileNetV3's x * relu6(x + 3) / 6, written as keras.applications writes it."""
    return layers.Multiply()([x, hard_sigmoid(x)])


def hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    return layers.Rescaling(1.0 / 6.0)(layers.ReLU(6.0)(layers.Rescaling(1.0, offset=3.0)(x)))


def squeeze_excite(x: tf.Tensor, reduced: int, gate: Callable[[tf.Tensor], tf.Tensor],
                   inner: str = "relu") -> tf.Tensor:
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(reduced, 1, activation=inner)(s)
    s = gate(layers.Conv2D(channels, 1)(s))
    return layers.Multiply()([x, s])   # [1,H,W,C] x [1,1,1,C]: a broadcast MUL


def conv_bn(x: tf.Tensor, filters: int, kernel: int, stride: int = 1) -> tf.Tensor:
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
    return layers.BatchNormalization()(x)


# ---------------------------------------------------------------- the models
def mobilenetv3_tiny() -> keras.Model:
    """Hard-swish stem, two inverted residuals with SE (hard-sigmoid gate), two exits."""
    x_in = keras.Input((16, 16, 1), batch_size=1, name="x")
    x = hard_swish(conv_bn(x_in, 8, 3, 2))                         # 8x8x8
    # inverted residual 1: expand, depthwise, SE, project, residual add
    h = hard_swish(conv_bn(x, 16, 1))
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    h = hard_swish(layers.BatchNormalization()(h))
    h = squeeze_excite(h, 4, hard_sigmoid)
    h = conv_bn(h, 8, 1)
    x = layers.Add()([x, h])
    exit0 = layers.Dense(10, name="exit0")(layers.GlobalAveragePooling2D()(x))
    # inverted residual 2: stride 2, no residual
    h = hard_swish(conv_bn(x, 24, 1))
    h = layers.DepthwiseConv2D(3, 2, padding="same", use_bias=False)(h)
    h = hard_swish(layers.BatchNormalization()(h))
    h = squeeze_excite(h, 8, hard_sigmoid)
    h = conv_bn(h, 16, 1)                                          # 4x4x16
    exit1 = layers.Dense(10, name="exit1")(layers.GlobalAveragePooling2D()(h))
    return keras.Model(x_in, [exit0, exit1], name="mobilenetv3_tiny")


def se_resnet_tiny() -> keras.Model:
    """Conv-BN-ReLU residual blocks with sigmoid squeeze-excite and a projection shortcut."""
    x_in = keras.Input((16, 16, 1), batch_size=1, name="x")
    x = layers.ReLU()(conv_bn(x_in, 8, 3))

    def block(x: tf.Tensor, filters: int, stride: int) -> tf.Tensor:
        h = layers.ReLU()(conv_bn(x, filters, 3, stride))
        h = conv_bn(h, filters, 3)
        h = squeeze_excite(h, max(filters // 4, 2),
                           lambda t: layers.Activation("sigmoid")(t))
        shortcut = x if stride == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, stride)
        return layers.ReLU()(layers.Add()([h, shortcut]))

    x = block(x, 8, 1)
    x = block(x, 16, 2)
    y = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(x_in, y, name="se_resnet_tiny")


def upsample_leaky() -> keras.Model:
    """LeakyReLU, Conv2DTranspose, UpSampling2D bilinear, TF1's align_corners bilinear,
    tf.image.resize nearest."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    x = layers.LeakyReLU(0.2)(layers.Conv2D(8, 3, 2, padding="same")(x_in))       # 4x4x8
    x = layers.Conv2DTranspose(8, 3, 2, padding="same")(x)                        # 8x8x8
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)                       # 16x16x8
    x = layers.Conv2D(8, 3, 2, padding="same")(x)                                 # 8x8x8
    x = layers.Lambda(lambda t: tf.compat.v1.image.resize_bilinear(
        t, (11, 11), align_corners=True))(x)                                      # 11x11x8
    x = layers.Lambda(lambda t: tf.image.resize(t, (14, 14), method="nearest"))(x)  # 14x14x8
    x = layers.Conv2D(8, 3, 2, padding="same")(x)                                 # 7x7x8
    y = layers.Dense(10, name="logits")(layers.Flatten()(x))
    return keras.Model(x_in, y, name="upsample_leaky")


def upsample_tile() -> keras.Model:
    """Keras 3's UpSampling2D(nearest) is a repeat: the converter emits RESHAPE/TILE, and
    TFLite Micro has no TILE. No FULLY_CONNECTED, so LiteRT BUILTIN_REF is a bit-exact oracle."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    x = layers.Conv2D(8, 3, 2, padding="same", activation="relu")(x_in)          # 4x4x8
    x = layers.UpSampling2D(2, interpolation="nearest")(x)                        # 8x8x8
    x = layers.Conv2D(10, 3, 2, padding="same")(x)                                # 4x4x10
    y = layers.GlobalAveragePooling2D(name="logits")(x)
    return keras.Model(x_in, y, name="upsample_tile")


def gated_kws() -> keras.Model:
    """KWS-like: a 2-D conv with tanh x sigmoid gating, then a 1-D conv with the same gating."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")   # (time, frequency, 1)
    a = layers.Conv2D(8, 3, padding="same", activation="tanh")(x_in)
    b = layers.Conv2D(8, 3, padding="same", activation="sigmoid")(x_in)
    x = layers.Multiply()([a, b])                                                 # 8x8x8
    x = layers.Reshape((8, 64))(x)                                                # (time, features)
    a = layers.Conv1D(12, 3, padding="same", activation="tanh")(x)
    b = layers.Conv1D(12, 3, padding="same", activation="sigmoid")(x)
    x = layers.Multiply()([a, b])                                                 # 8x12
    y = layers.Dense(10, name="logits")(layers.GlobalAveragePooling1D()(x))
    return keras.Model(x_in, y, name="gated_kws")


def prelu() -> keras.Model:
    """PReLU with a per-channel alpha (shared over H, W) and with a full per-element alpha."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    x = layers.Conv2D(8, 3, padding="same")(x_in)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                     shared_axes=[1, 2])(x)
    x = layers.Conv2D(8, 3, 2, padding="same")(x)
    x = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.1))(x)   # full alpha
    y = layers.Dense(10, name="logits")(layers.Flatten()(x))
    return keras.Model(x_in, y, name="prelu")


def elu() -> keras.Model:
    """ELU alone: TF 2.21's quantizer has no int8 ELU, so it keeps a float island
    (DEQUANTIZE, float ELU, QUANTIZE) even with TFLITE_BUILTINS_INT8 only."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    x = layers.ELU()(layers.Conv2D(8, 3, padding="same")(x_in))
    x = layers.Conv2D(8, 3, 2, padding="same", activation="relu")(x)
    y = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(x_in, y, name="elu")


def shuffle_split() -> keras.Model:
    """ShuffleNetV2 unit: channel split, one branch convolved, concat, channel shuffle."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x_in)

    def unit(x: tf.Tensor) -> tf.Tensor:
        c = x.shape[-1]
        left, right = layers.Lambda(lambda t: tf.split(t, 2, axis=-1))(x)
        right = layers.Conv2D(c // 2, 1, activation="relu")(right)
        right = layers.DepthwiseConv2D(3, padding="same")(right)
        right = layers.Conv2D(c // 2, 1, activation="relu")(right)
        x = layers.Concatenate()([left, right])
        h, w = x.shape[1], x.shape[2]
        x = layers.Reshape((h, w, 2, c // 2))(x)
        x = layers.Permute((1, 2, 4, 3))(x)
        return layers.Reshape((h, w, c))(x)

    x = unit(unit(x))
    y = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(x_in, y, name="shuffle_split")


def reduce_minmax() -> keras.Model:
    """subtract, maximum, minimum; reduce_sum and reduce_mean over channels; GlobalMaxPooling2D."""
    x_in = keras.Input((8, 8, 1), batch_size=1, name="x")
    a = layers.Conv2D(8, 3, padding="same")(x_in)
    b = layers.Conv2D(8, 3, padding="same")(x_in)
    d = layers.Subtract()([a, b])
    hi = layers.Maximum()([a, b])
    lo = layers.Minimum()([a, b])
    s = layers.Lambda(lambda t: tf.reduce_sum(t, axis=-1, keepdims=True))(hi)
    m = layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True))(lo)
    x = layers.Concatenate()([d, s, m])                                           # 8x8x10
    x = layers.Conv2D(12, 3, 2, padding="same", activation="relu")(x)
    y = layers.Dense(10, name="logits")(layers.GlobalMaxPooling2D()(x))
    return keras.Model(x_in, y, name="reduce_minmax")


MODELS: dict[str, tuple[Callable[[], keras.Model], int]] = {
    "mobilenetv3_tiny": (mobilenetv3_tiny, 16),
    "se_resnet_tiny": (se_resnet_tiny, 16),
    "upsample_leaky": (upsample_leaky, 8),
    "upsample_tile": (upsample_tile, 8),
    "gated_kws": (gated_kws, 8),
    "prelu": (prelu, 8),
    "elu": (elu, 8),
    "shuffle_split": (shuffle_split, 8),
    "reduce_minmax": (reduce_minmax, 8),
}


# ---------------------------------------------------------------- train and convert
def train(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """A few SGD steps so BN statistics and weights are not at their initial values."""
    n_out = len(model.outputs)
    losses = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * n_out
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=losses if n_out > 1 else losses[0])
    ys = [y] * n_out if n_out > 1 else y
    # the Inputs have batch size 1 (the converter then writes static batch-1 shapes)
    model.fit(x, ys, batch_size=1, epochs=1, steps_per_epoch=STEPS, shuffle=False, verbose=0)


def convert(model: keras.Model, x: np.ndarray) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)

    def representative():
        for i in range(CALIBRATION):
            yield [x[i:i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def build_one(name: str, digits_path: Path, out: Path) -> None:
    build, size = MODELS[name]
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(SEED)
    x, y = digits(digits_path, size)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    model = build()
    train(model, x, y)
    data = convert(model, x[-CALIBRATION:])
    (out / f"{name}.tflite").write_bytes(data)
    print(f"{name}.tflite: {len(data)} bytes")


def main(digits_path: str, out_dir: str) -> None:
    """One process per model: converting a second model in one process crashed TF 2.21
    (double free), and fresh processes make each file independent of the others."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        subprocess.run([sys.executable, __file__, digits_path, out_dir, name], check=True)
    sums = [f"{hashlib.sha256((out / f'{n}.tflite').read_bytes()).hexdigest()}  {n}.tflite\n"
            for n in sorted(MODELS)]
    (out / "SHA256SUMS").write_text("".join(sums))


if __name__ == "__main__":
    if len(sys.argv) == 4:
        build_one(sys.argv[3], Path(sys.argv[1]), Path(sys.argv[2]))
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: make_tf_fixtures.py DIGITS.npz OUT_DIR [MODEL]")
