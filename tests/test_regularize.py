"""Tests for keras_reg.regularize."""

import doctest
import importlib
import os

import keras
import numpy as np
import pytest
from helpers import invalid_message

import keras_reg
from keras_reg.regularizers import L1, L2


def test_docstring_example_runs():
    module = importlib.import_module("keras_reg.regularize")
    failures, attempted = doctest.testmod(module, verbose=False)
    assert (failures, attempted > 0) == (0, True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _trained_mlp():
    """A Sequential MLP whose weights moved away from their initial values."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu", name="hidden"),
            keras.layers.Dense(5, activation="tanh", name="middle"),
            keras.layers.Dense(2, name="output"),
        ],
        name="mlp",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x, y


def _functional_mlp():
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="output")(hidden)
    return keras.Model(inputs, outputs, name="functional_mlp")


def _weights_by_layer(model):
    """Layer name -> list of its weights as NumPy arrays, at any depth."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_weights_by_layer(layer))
        elif layer.weights:
            found[layer.name] = [_np(w) for w in layer.weights]
    return found


def _total_loss(model):
    return float(sum(_np(loss).astype(np.float64) for loss in model.losses))


class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_keeps_trained_weights_bit_for_bit():
    model, x, y = _trained_mlp()
    before = _weights_by_layer(model)
    regularized = keras_reg.regularize(
        model,
        kernel_regularizer=L2(0.1),
        bias_regularizer=L1(0.1),
        dropout=0.5,
        batch_normalization=True,
    )
    after = _weights_by_layer(regularized)
    for name, weights in before.items():
        assert len(after[name]) == len(weights)
        for new, old in zip(after[name], weights, strict=True):
            np.testing.assert_array_equal(new, old)
    # Training the copy leaves the input model as it was (the copy owns its
    # buffers: on JAX a shared one would be deleted by the training step).
    regularized.compile(optimizer="sgd", loss="mse")
    regularized.train_on_batch(x, y)
    assert not np.array_equal(_np(regularized.layers[0].kernel), before["hidden"][0])
    model.predict(x, verbose=0)
    for name, weights in _weights_by_layer(model).items():
        for new, old in zip(weights, before[name], strict=True):
            np.testing.assert_array_equal(new, old)
    assert model.losses == []
    assert [layer.name for layer in model.layers] == ["hidden", "middle", "output"]
    assert regularized is not model


def test_penalty_equals_a_hand_built_model_and_numpy():
    model = _functional_mlp()
    # Non-zero biases, so that the bias penalty is not trivially zero.
    rng = np.random.default_rng(1)
    for layer in model.layers[1:]:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    regularized = keras_reg.regularize(
        model, kernel_regularizer=L2(0.1), bias_regularizer=L1(0.05)
    )
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(
        6,
        activation="relu",
        kernel_regularizer=L2(0.1),
        bias_regularizer=L1(0.05),
    )(inputs)
    outputs = keras.layers.Dense(
        2, kernel_regularizer=L2(0.1), bias_regularizer=L1(0.05)
    )(hidden)
    reference = keras.Model(inputs, outputs)
    reference.set_weights(model.get_weights())

    assert len(regularized.losses) == len(reference.losses) == 4
    for ours, theirs in zip(regularized.losses, reference.losses, strict=True):
        np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-6)
    kernels = [_np(layer.kernel).astype(np.float64) for layer in model.layers[1:]]
    biases = [_np(layer.bias).astype(np.float64) for layer in model.layers[1:]]
    expected = 0.1 * sum(np.sum(k**2) for k in kernels) + 0.05 * sum(
        np.sum(np.abs(b)) for b in biases
    )
    np.testing.assert_allclose(_total_loss(regularized), expected, rtol=1e-5)
    np.testing.assert_allclose(_total_loss(reference), expected, rtol=1e-5)


def test_penalty_enters_the_loss_and_the_update():
    model = _functional_mlp()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    l2, learning_rate = 0.5, 0.1
    plain = keras_reg.regularize(model)
    penalized = keras_reg.regularize(model, kernel_regularizer=L2(l2))
    kernels = {
        layer.name: _np(layer.kernel).astype(np.float64) for layer in model.layers[1:]
    }
    penalty = l2 * sum(np.sum(k**2) for k in kernels.values())
    losses = {}
    for name, built in (("plain", plain), ("penalized", penalized)):
        built.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
        losses[name] = float(built.train_on_batch(x, y))
    # train_on_batch reports the loss before the step: mse plus the penalty.
    np.testing.assert_allclose(
        losses["penalized"], losses["plain"] + penalty, rtol=1e-5
    )
    # Same data, same weights: the gradients differ by the penalty's, 2 * l2 * w.
    for name, kernel in kernels.items():
        step = _np(penalized.get_layer(name).kernel) - _np(plain.get_layer(name).kernel)
        np.testing.assert_allclose(
            step, -learning_rate * 2 * l2 * kernel, rtol=1e-4, atol=1e-6
        )


def test_saves_and_reloads_as_keras_file(tmp_path):
    model, x, _ = _trained_mlp()
    regularized = keras_reg.regularize(
        model, kernel_regularizer=L2(0.01), dropout=0.25, seed=3
    )
    path = os.path.join(str(tmp_path), "regularized.keras")
    regularized.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert [type(layer) for layer in restored.layers] == [
        keras.layers.Dense,
        keras_reg.layers.Dropout,
        keras.layers.Dense,
        keras_reg.layers.Dropout,
        keras.layers.Dense,
    ]
    assert isinstance(restored.get_layer("hidden").kernel_regularizer, L2)
    np.testing.assert_array_equal(
        restored.predict(x, verbose=0), regularized.predict(x, verbose=0)
    )
    np.testing.assert_array_equal(
        restored.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    np.testing.assert_allclose(
        _total_loss(restored), _total_loss(regularized), rtol=1e-6
    )


def _small_backbone():
    """A functional backbone with the layers of MobileNet-like networks."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    y = keras.layers.SeparableConv2D(4, 3, padding="same", name="separable")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.Conv2D(6, 1, name="project")(x)
    return keras.Model(inputs, x, name="backbone")


def _kernels_of_backbone_classifier(model):
    """Kernel variables of `_backbone_classifier`, depthwise and pointwise too."""
    names = ("kernel", "depthwise_kernel", "pointwise_kernel")
    return [v for v in model.trainable_weights if v.name in names]


def _backbone_classifier(backbone):
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inputs))
    outputs = keras.layers.Dense(3, name="classifier")(features)
    return keras.Model(inputs, outputs)


def _check_every_kernel_penalized(backbone, min_kernels, forward=True):
    model = _backbone_classifier(backbone)
    regularized = keras_reg.regularize(model, kernel_regularizer=L2(1e-3))
    kernels = _kernels_of_backbone_classifier(model)
    assert len(regularized.losses) == len(kernels) >= min_kernels
    expected = 1e-3 * sum(np.sum(_np(k).astype(np.float64) ** 2) for k in kernels)
    np.testing.assert_allclose(_total_loss(regularized), expected, rtol=1e-5)
    before, after = _weights_by_layer(model), _weights_by_layer(regularized)
    assert before.keys() == after.keys()
    for name, weights in before.items():
        for new, old in zip(after[name], weights, strict=True):
            np.testing.assert_array_equal(new, old)

    # Selecting the backbone by name: Dropout after it, not inside it.
    with_dropout = keras_reg.regularize(model, dropout=0.3, layers=backbone.name)
    assert [layer.name for layer in with_dropout.layers] == [
        "image",
        backbone.name,
        f"{backbone.name}_dropout",
        "pool",
        "classifier",
    ]
    inner = with_dropout.get_layer(backbone.name)
    assert not any(isinstance(layer, keras_reg.Dropout) for layer in inner.layers)
    if forward:
        shape = (2,) + tuple(backbone.input_shape[1:])
        x = np.random.default_rng(3).uniform(size=shape).astype("float32")
        np.testing.assert_array_equal(_np(regularized(x)), _np(model(x)))
        np.testing.assert_array_equal(_np(with_dropout(x)), _np(model(x)))


def test_nested_functional_backbone_gets_every_kernel_penalized():
    # Conv2D (no bias), DepthwiseConv2D, SeparableConv2D (two kernels),
    # Conv2D and the classifier's Dense.
    _check_every_kernel_penalized(_small_backbone(), min_kernels=6)


def test_nested_keras_applications_backbone_gets_every_kernel_penalized():
    # Building it takes about 7 s on JAX (each initializer is compiled), so
    # the forward passes are left to the small backbone's test above.
    backbone = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, include_top=False
    )
    # 27 convolutions (13 of them depthwise) and the classifier.
    _check_every_kernel_penalized(backbone, min_kernels=28, forward=False)


def test_nested_sequential_and_functional_models():
    block = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, name="block_dense")], name="block"
    )
    head_in = keras.Input((5,))
    head_out = keras.layers.Dense(2, name="head_dense")(
        keras.layers.Dense(3, name="head_hidden")(head_in)
    )
    head = keras.Model(head_in, head_out, name="head")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, head(block(inputs)), name="outer")
    x = np.random.default_rng(4).normal(size=(3, 4)).astype("float32")

    regularized = keras_reg.regularize(model, kernel_regularizer="l2", dropout=0.5)
    # Dropout after every kernel but the one whose output ends the model.
    assert [layer.name for layer in regularized.get_layer("block").layers] == [
        "block_dense",
        "block_dense_dropout",
    ]
    assert [layer.name for layer in regularized.get_layer("head").layers[1:]] == [
        "head_hidden",
        "head_hidden_dropout",
        "head_dense",
    ]
    assert len(regularized.losses) == 3
    assert all(
        isinstance(layer.kernel_regularizer, L2)
        for name in ("block", "head")
        for layer in regularized.get_layer(name).layers
        if isinstance(layer, keras.layers.Dense)
    )
    np.testing.assert_array_equal(_np(regularized(x)), _np(model(x)))


def test_inserted_batch_normalization_scales_by_its_epsilon_at_inference():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="output")(hidden)
    model = keras.Model(inputs, outputs)
    regularized = keras_reg.regularize(model, batch_normalization=True)
    inserted = regularized.get_layer("hidden_batch_normalization")
    assert isinstance(inserted, keras_reg.BatchNormalization)
    assert inserted.axis == -1

    x = np.random.default_rng(5).normal(size=(5, 3)).astype(np.float64)
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    expected = ((x @ w1 + b1) / np.sqrt(1 + inserted.epsilon)) @ w2 + b2
    actual = _np(regularized(x.astype("float32"))).astype(np.float64)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)

    conv = keras.Sequential(
        [
            keras.Input((2, 6, 6)),
            keras.layers.Conv2D(3, 3, data_format="channels_first", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    channels_first = keras_reg.regularize(conv, batch_normalization=True)
    assert channels_first.get_layer("conv_batch_normalization").axis == 1


def test_selects_layers_by_pattern_names_and_predicate():
    model, _, _ = _trained_mlp()
    by_pattern = keras_reg.regularize(model, kernel_regularizer="l1", layers="h.*")
    by_names = keras_reg.regularize(model, kernel_regularizer="l1", layers=["hidden"])
    by_predicate = keras_reg.regularize(
        model, kernel_regularizer="l1", layers=lambda layer: layer.name == "hidden"
    )
    for regularized in (by_pattern, by_names, by_predicate):
        assert isinstance(regularized.get_layer("hidden").kernel_regularizer, L1)
        assert regularized.get_layer("middle").kernel_regularizer is None
        assert len(regularized.losses) == 1
    # fullmatch: "idden" matches no whole name.
    with pytest.raises(ValueError, match="matches at least one layer"):
        keras_reg.regularize(model, dropout=0.1, layers="idden")


def test_selected_layer_without_kernel_gets_dropout_after_it():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(2, 3, name="conv"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(1, name="output"),
        ]
    )
    regularized = keras_reg.regularize(model, dropout=0.2, layers=["flatten"], seed=7)
    assert [layer.name for layer in regularized.layers] == [
        "conv",
        "flatten",
        "flatten_dropout",
        "output",
    ]
    assert regularized.get_layer("flatten_dropout").seed == 7


def test_inserted_dropout_layers_get_consecutive_seeds_and_unique_names():
    model, _, _ = _trained_mlp()
    once = keras_reg.regularize(model, dropout=0.1, seed=10)
    assert [once.get_layer(n).seed for n in ("hidden_dropout", "middle_dropout")] == [
        10,
        11,
    ]
    twice = keras_reg.regularize(once, dropout=0.1, layers=["hidden"])
    assert [layer.name for layer in twice.layers[:3]] == [
        "hidden",
        "hidden_dropout_1",
        "hidden_dropout",
    ]


def _conv_net(functional=False):
    layers = [
        keras.layers.Conv2D(4, 3, padding="same", name="conv_a"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Conv2D(4, 3, padding="same", name="conv_b"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(6, name="hidden"),
        keras.layers.Dense(3, name="output"),
    ]
    if not functional:
        return keras.Sequential([keras.Input((8, 8, 1)), *layers], name="net")
    x = inputs = keras.Input((8, 8, 1))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="net")


@pytest.mark.parametrize("functional", [False, True])
def test_spatial_template_goes_after_layers_with_4d_outputs_only(functional):
    model = _conv_net(functional)
    template = keras_reg.layers.DropBlock2D(0.15, block_size=3, seed=99)
    regularized = keras_reg.regularize(model, dropout=template, seed=20)
    names = [
        layer.name
        for layer in regularized.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    # Dense outputs are 2-D: no DropBlock after `hidden`.
    assert names == [
        "conv_a",
        "conv_a_drop_block2d",
        "pool",
        "conv_b",
        "conv_b_drop_block2d",
        "flatten",
        "hidden",
        "output",
    ]
    copies = [regularized.get_layer(n) for n in names if n.endswith("block2d")]
    assert all(type(c) is keras_reg.layers.DropBlock2D for c in copies)
    assert all(c is not template for c in copies)
    assert [(c.rate, c.block_size, c.seed) for c in copies] == [
        (0.15, 3, 20),
        (0.15, 3, 21),
    ]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(_np(regularized(x)), _np(model(x)))


def test_template_copies_count_from_its_own_seed_without_seed():
    copies = keras_reg.regularize(
        _conv_net(), dropout=keras.layers.SpatialDropout2D(0.2, seed=5)
    )
    assert [
        (layer.name, type(layer), layer.seed)
        for layer in copies.layers
        if "spatial" in layer.name
    ] == [
        ("conv_a_spatial_dropout2d", keras.layers.SpatialDropout2D, 5),
        ("conv_b_spatial_dropout2d", keras.layers.SpatialDropout2D, 6),
    ]


def test_rank_free_template_goes_after_every_selected_layer():
    model, _, _ = _trained_mlp()
    regularized = keras_reg.regularize(
        model, dropout=keras.layers.GaussianNoise(0.1), seed=3
    )
    assert [layer.name for layer in regularized.layers] == [
        "hidden",
        "hidden_gaussian_noise",
        "middle",
        "middle_gaussian_noise",
        "output",
    ]
    noise = [layer for layer in regularized.layers if "gaussian_noise" in layer.name]
    assert [layer.seed for layer in noise] == [3, 4]
    assert [layer.stddev for layer in noise] == [0.1, 0.1]


def test_spatial_template_with_no_4d_output_raises():
    model, _, _ = _trained_mlp()
    template = keras_reg.layers.DropBlock2D(0.1, block_size=3)
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, dropout=template)
    assert str(info.value) == invalid_message(
        "dropout",
        "a dropout layer that fits a selected layer's output (it takes 4-D "
        "inputs, and no selected layer that is not an output of the model has "
        "a 4-D output)",
        template,
    )


def test_template_seed_past_31_bits_raises():
    model, _, _ = _trained_mlp()
    template = keras_reg.layers.Dropout(0.1, seed=2**31 - 1)
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, dropout=template)
    assert str(info.value) == invalid_message(
        "dropout",
        "a dropout layer whose seed is None or an int in [0, 2**30]",
        template,
    )


@pytest.mark.parametrize(
    "dropout",
    [
        "0.5",
        keras.layers.Dense(3),
        keras_reg.layers.StochasticDepth(0.1),
        keras_reg.layers.Dropout,
    ],
)
def test_dropout_that_is_no_rate_nor_dropout_layer_raises(dropout):
    model, _, _ = _trained_mlp()
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, dropout=dropout)
    assert str(info.value) == invalid_message(
        "dropout",
        "a float in [0, 1), a dropout layer to copy (Dropout, SpatialDropout1D, "
        "SpatialDropout2D, SpatialDropout3D, DropBlock2D, GaussianDropout, "
        "GaussianNoise or AlphaDropout, from keras_reg.layers or keras.layers) "
        "or None",
        dropout,
    )


def test_model_with_template_copies_saves_and_loads(tmp_path):
    regularized = keras_reg.regularize(
        _conv_net(), dropout=keras_reg.layers.DropBlock2D(0.1, block_size=2), seed=1
    )
    path = str(tmp_path / "net.keras")
    regularized.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in regularized.layers
    ]
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(_np(loaded(x)), _np(regularized(x)))


def test_wrapped_layers_get_penalties():
    model = keras.Sequential(
        [
            keras.Input((3, 4)),
            keras.layers.TimeDistributed(keras.layers.Dense(2), name="wrapped"),
        ]
    )
    regularized = keras_reg.regularize(model, kernel_regularizer=L2(0.3))
    kernel = _np(model.layers[0].weights[0]).astype(np.float64)
    assert len(regularized.losses) == 1
    np.testing.assert_allclose(
        _total_loss(regularized), 0.3 * np.sum(kernel**2), rtol=1e-5
    )


def test_compiled_model_gives_a_compiled_copy_and_frozen_layers_stay_frozen():
    model, x, y = _trained_mlp()
    model.get_layer("hidden").trainable = False
    regularized = keras_reg.regularize(model, kernel_regularizer=L2(0.01))
    assert regularized.compiled
    assert regularized.loss == "mse"
    assert not regularized.get_layer("hidden").trainable
    frozen = _np(regularized.get_layer("hidden").kernel)
    regularized.train_on_batch(x, y)
    np.testing.assert_array_equal(_np(regularized.get_layer("hidden").kernel), frozen)

    inputs = keras.Input((4,))
    inner = _functional_mlp()
    inner.trainable = False
    outer = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    copy = keras_reg.regularize(outer, kernel_regularizer=L2(0.01))
    assert not copy.get_layer("functional_mlp").trainable
    assert len(copy.trainable_weights) == 2


def test_refuses_a_subclassed_model():
    model = _Subclassed(name="custom")
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, kernel_regularizer="l2")
    assert str(info.value) == invalid_message(
        "model",
        "a Sequential or functional Keras model (the call() of a subclassed "
        "model cannot be rewritten)",
        model,
    )

    inputs = keras.Input((3,))
    outer = keras.Model(inputs, model(inputs))
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(outer, kernel_regularizer="l2")
    assert str(info.value) == invalid_message(
        "model",
        "a Sequential or functional Keras model whose nested models are "
        "Sequential or functional too (the call() of the subclassed model "
        "`custom` inside it cannot be rewritten)",
        outer,
    )


@pytest.mark.parametrize(
    "kwargs, name, expected",
    [
        ({"dropout": 1.5}, "dropout", "a float in [0, 1)"),
        ({"dropout": 1.0}, "dropout", "a float in [0, 1)"),
        ({"dropout": True}, "dropout", "a float in [0, 1)"),
        ({"dropout": float("nan")}, "dropout", "a float in [0, 1)"),
        ({"batch_normalization": 1}, "batch_normalization", "a bool"),
        ({"seed": -1, "dropout": 0.1}, "seed", "an int in [0, 2**30]"),
        # Each inserted Dropout takes the next seed: a 31-bit seed state on
        # JAX and torch would overflow.
        ({"seed": 2**30 + 1, "dropout": 0.1}, "seed", "an int in [0, 2**30]"),
        (
            {"kernel_regularizer": "l3"},
            "kernel_regularizer",
            "a regularizer, its name or its config, or None",
        ),
        (
            {"bias_regularizer": 0.1},
            "bias_regularizer",
            "a regularizer, its name or its config, or None",
        ),
        ({"dropout": 0.1, "layers": "("}, "layers", "a valid regular expression"),
        (
            {"dropout": 0.1, "layers": 3},
            "layers",
            "None, a regular expression, a list of layer names or a callable "
            "`layer -> bool`",
        ),
        (
            # A class is callable, but it is no predicate.
            {"dropout": 0.1, "layers": keras.layers.Dense},
            "layers",
            "None, a regular expression, a list of layer names or a callable "
            "`layer -> bool`",
        ),
        (
            {"dropout": 0.1, "layers": ["hidden", "hiden"]},
            "layers",
            "names of the model's layers (no layer is named hiden)",
        ),
        (
            {"dropout": 0.1, "layers": "nothing.*"},
            "layers",
            "a selection that matches at least one layer",
        ),
        (
            {"kernel_regularizer": "l2", "layers": lambda layer: False},
            "layers",
            "a selection that matches at least one layer",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_arguments_name_the_argument(kwargs, name, expected):
    model = _functional_mlp()
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, **kwargs)
    assert str(info.value) == invalid_message(name, expected, kwargs[name])


def test_penalties_need_a_selected_kernel():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Flatten(name="flat"), keras.layers.Dense(1)]
    )
    with pytest.raises(ValueError) as info:
        keras_reg.regularize(model, kernel_regularizer="l2", layers=["flat"])
    assert str(info.value) == invalid_message(
        "layers",
        "a selection that includes a layer with a kernel (such as Dense or "
        "Conv2D) to receive `kernel_regularizer` and `bias_regularizer`",
        ["flat"],
    )


def test_pattern_matching_everything_skips_inputs_and_outputs():
    model = _functional_mlp()
    regularized = keras_reg.regularize(model, dropout=0.1, layers=".*")
    assert [layer.name for layer in regularized.layers] == [
        "features",
        "hidden",
        "hidden_dropout",
        "output",
    ]


def test_inserted_layers_take_the_dtype_policy_of_the_layer_before():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)]
        )
    finally:
        keras.config.set_dtype_policy("float32")
    regularized = keras_reg.regularize(model, dropout=0.2, batch_normalization=True)
    assert [layer.dtype_policy.name for layer in regularized.layers] == [
        "mixed_float16"
    ] * 4


def test_a_layer_shared_by_two_nested_models_stays_shared():
    shared = keras.layers.Dense(3, name="shared")
    first = keras.Sequential([keras.Input((4,)), shared], name="first")
    second = keras.Sequential([keras.Input((4,)), shared], name="second")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Add()([first(inputs), second(inputs)]))
    regularized = keras_reg.regularize(model, kernel_regularizer=keras_reg.L2(0.1))
    # One kernel and one bias, as in the original: the copies of `first` and
    # `second` hold the same layer, so training moves one set of weights.
    assert len(model.trainable_variables) == 2
    assert len(regularized.trainable_variables) == 2
    new_first, new_second = regularized.layers[1], regularized.layers[2]
    assert new_first.layers[0] is new_second.layers[0]
