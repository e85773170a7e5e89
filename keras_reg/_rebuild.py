"""Rebuilding a Sequential or functional model with new layers, for `regularize`.

Only public Keras API: layers are re-created from their configs, functional
graphs re-run through `keras.models.clone_model`, Sequential models rebuilt
layer by layer, and every variable then copied from the original.
"""

import re

import keras

from keras_reg._validation import invalid_argument
from keras_reg.layers.batch_normalization import BatchNormalization
from keras_reg.layers.dropout import Dropout

# The config keys that hold a kernel's regularizer: Dense, EinsumDense, Conv*,
# the RNNs' input kernel, MultiHeadAttention's projections, and the two
# kernels of depthwise and separable convolutions.
_KERNEL_KEYS = ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer")
# The variables those regularizers penalize (not RNNs' recurrent kernels).
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")
# Wrappers (Bidirectional, TimeDistributed) keep the wrapped layers' configs
# under these keys and rebuild them from there.
_WRAPPED_KEYS = ("layer", "backward_layer")


def _wrapped_configs(config):
    """Yields `config` and the configs of the layers it wraps."""
    yield config
    for key in _WRAPPED_KEYS:
        wrapped = config.get(key)
        if isinstance(wrapped, dict) and isinstance(wrapped.get("config"), dict):
            yield from _wrapped_configs(wrapped["config"])


def has_kernel(layer):
    return not is_graph_model(layer) and any(
        key in config
        for config in _wrapped_configs(layer.get_config())
        for key in _KERNEL_KEYS
    )


def is_graph_model(layer):
    """True for a Sequential or functional model, whose graph can be rebuilt.

    A subclassed model's `call` is the user's code; Keras's own `call` (on
    Sequential, functional models and functional subclasses that keep it)
    runs the layer graph that `clone_model` walks.
    """
    if not isinstance(layer, keras.Sequential) and not (
        isinstance(layer, keras.Model) and hasattr(layer, "operations")
    ):
        return False
    owner = next(cls for cls in type(layer).__mro__ if "call" in vars(cls))
    return owner.__module__.split(".")[0] == "keras"


def walk(model):
    """Yields every layer of `model` but its inputs, at any depth."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        yield layer
        if is_graph_model(layer):
            yield from walk(layer)


def _all_names(model):
    names = {model.name}
    for layer in model.layers:
        names |= _all_names(layer) if is_graph_model(layer) else {layer.name}
    return names


def _dtype_of(layer):
    """The dtype policy for a layer inserted after `layer`: the same, unquantized."""
    policy = layer.dtype_policy
    if policy.quantization_mode is None:
        return policy
    if policy.compute_dtype == policy.variable_dtype:
        return policy.compute_dtype
    return f"mixed_{policy.compute_dtype}"


def _output_layer_names(model):
    """Names of the layers of `model` whose outputs are the model's outputs."""
    if isinstance(model, keras.Sequential):
        return {model.layers[-1].name} if model.layers else set()
    config = model.get_config()
    if "output_layers" in config:
        # Each output is recorded as [layer_name, node_index, tensor_index].
        leaves = keras.tree.flatten(config["output_layers"])
        return {leaf for leaf in leaves if isinstance(leaf, str)}
    # A functional subclass with its own config: the layers whose first call
    # made an output.
    outputs = {id(tensor) for tensor in model.outputs}
    return {
        layer.name
        for layer in model.layers
        if any(id(tensor) in outputs for tensor in keras.tree.flatten(layer.output))
    }


def final_layer_ids(model, final=True):
    """Ids of the layers, at any depth, whose outputs are `model`'s outputs."""
    outputs = _output_layer_names(model)
    found = set()
    for layer in model.layers:
        is_final = final and layer.name in outputs
        if is_final:
            found.add(id(layer))
        if is_graph_model(layer):
            found |= final_layer_ids(layer, is_final)
    return found


def _new_inputs(model):
    """New inputs for a functional model, named as its input layers.

    `clone_model` would name them after the symbolic tensors instead, which
    renames the input layers and breaks inputs given as a dict by name.
    """
    names = {
        id(layer.output): layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    return keras.tree.map_structure(
        lambda x: keras.Input(
            batch_shape=x.shape, dtype=x.dtype, sparse=x.sparse, name=names.get(id(x))
        ),
        model.input,
    )


def _snake(cls):
    """`DropBlock2D` -> `drop_block2d`, as Keras names layers by default."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls.__name__)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _output_rank(layer):
    """The rank of a layer's output in a Sequential model, or None if unknown."""
    try:
        output = layer.output
    except (AttributeError, ValueError):  # never called, or called twice
        return None
    return len(output.shape) if isinstance(output, keras.KerasTensor) else None


def penalized(selected):
    """The layers with a kernel among `selected` and inside its nested models."""
    found = []
    for layer in selected:
        inner = walk(layer) if is_graph_model(layer) else [layer]
        found.extend(layer for layer in inner if has_kernel(layer))
    return found


class Rebuilder:
    """Rebuilds a model with new layers, penalties set and layers inserted."""

    def __init__(self, model, selected, options):
        self.options = options
        self.penalized = {id(layer) for layer in penalized(selected)}
        final = final_layer_ids(model)
        self.insert_after = {id(layer) for layer in selected if id(layer) not in final}
        if options["dropout"] is None and not options["batch_normalization"]:
            self.insert_after = set()
        self.names = _all_names(model)
        self.pairs = []  # (original, clone) of every layer not rebuilt.
        self.clones = {}  # id(original) -> its one clone.
        self.origin = {}  # id(clone) -> original, for the call function.
        self.dropout_count = 0
        # A dropout layer given as a template that takes inputs of one rank
        # (SpatialDropout2D, DropBlock2D: 4-D) follows only the selected
        # layers with outputs of that rank.
        spec = getattr(options["dropout"], "input_spec", None)
        self.template_rank = (
            spec.ndim if isinstance(spec, keras.layers.InputSpec) else None
        )

    def rebuild(self, model):
        if isinstance(model, keras.Sequential):
            new_model = self._sequential(model)
        else:
            new_model = keras.models.clone_model(
                model,
                input_tensors=_new_inputs(model),
                clone_function=self._clone,
                call_function=self._call,
            )
        if not model.trainable:
            new_model.trainable = False
        return new_model

    def _clone(self, layer):
        # One clone per layer across the whole rebuild: `clone_model` keeps
        # sharing only within one call, and a layer may be shared by two
        # nested models.
        if id(layer) in self.clones:
            return self.clones[id(layer)]
        if is_graph_model(layer):
            clone = self.rebuild(layer)
        else:
            config = layer.get_config()
            if id(layer) in self.penalized:
                self._set_penalties(config)
            clone = layer.__class__.from_config(config)
            if isinstance(layer, keras.layers.Layer):  # not a `keras.ops` operation
                self.pairs.append((layer, clone))
        self.origin[id(clone)] = layer
        self.clones[id(layer)] = clone
        return clone

    def _set_penalties(self, config):
        penalties = dict.fromkeys(_KERNEL_KEYS, self.options["kernel_regularizer"])
        penalties["bias_regularizer"] = self.options["bias_regularizer"]
        for entry in _wrapped_configs(config):
            for key, regularizer in penalties.items():
                if regularizer is not None and key in entry:
                    entry[key] = regularizer

    def _call(self, layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        original = self.origin.get(id(layer))
        if original is None or id(original) not in self.insert_after:
            return outputs
        if not isinstance(outputs, keras.KerasTensor):
            raise invalid_argument(
                "layers",
                "layers with one output tensor to insert Dropout or "
                f"BatchNormalization after (layer `{original.name}` has several)",
                self.options["layers"],
            )
        for inserted in self._inserted(original, len(outputs.shape)):
            outputs = inserted(outputs)
        return outputs

    def _inserted(self, original, rank):
        """New layers to place after `original`: BatchNormalization, Dropout.

        `rank` is the rank of `original`'s output (None when unknown).
        """
        inserted = []
        if self.options["batch_normalization"]:
            data_format = original.get_config().get("data_format")
            inserted.append(
                BatchNormalization(
                    axis=1 if data_format == "channels_first" else -1,
                    dtype=_dtype_of(original),
                    name=self._unique(f"{original.name}_batch_normalization"),
                )
            )
        dropout = self.options["dropout"]
        if dropout is None or (
            self.template_rank is not None and rank != self.template_rank
        ):
            return inserted
        if isinstance(dropout, keras.layers.Layer):
            cls, config = type(dropout), dropout.get_config()
        else:
            cls, config = Dropout, {"rate": dropout, "seed": None}
        config["name"] = self._unique(f"{original.name}_{_snake(cls)}")
        config["dtype"] = _dtype_of(original)
        seed = self.options["seed"]
        if "seed" in config:
            # Without `seed`, a template's own seed starts the count.
            seed = config["seed"] if seed is None else seed
            config["seed"] = None if seed is None else seed + self.dropout_count
        self.dropout_count += 1
        inserted.append(cls.from_config(config))
        return inserted

    def _unique(self, name):
        candidate, index = name, 0
        while candidate in self.names:
            index += 1
            candidate = f"{name}_{index}"
        self.names.add(candidate)
        return candidate

    def _sequential(self, model):
        new_layers = []
        for layer in model.layers:
            new_layers.append(self._clone(layer))
            if id(layer) in self.insert_after:
                new_layers.extend(self._inserted(layer, _output_rank(layer)))
        head = model.get_config()["layers"][:1]
        if head and head[0]["class_name"] == "InputLayer":
            new_layers.insert(0, keras.saving.deserialize_keras_object(head[0]))
        new_model = keras.Sequential(new_layers, name=model.name)
        if model.compiled:
            new_model.compile_from_config(model.get_compile_config())
        return new_model

    def copy_weights(self):
        for original, clone in self.pairs:
            if len(original.variables) != len(clone.variables):
                raise ValueError(
                    f"Could not copy the weights of layer `{original.name}`: its "
                    f"copy has {len(clone.variables)} variables, the original "
                    f"{len(original.variables)}."
                )
            for source, target in zip(original.variables, clone.variables, strict=True):
                # Through NumPy, so that the copy owns its buffer: on JAX,
                # assigning the variable itself shares the array, and a
                # training step that donates it would delete the original's.
                target.assign(keras.ops.convert_to_numpy(source))
