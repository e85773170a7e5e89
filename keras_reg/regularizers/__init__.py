"""Weight penalties: drop-in L1, L2 and ElasticNet (L1L2), proximal L1, GroupLasso.

This namespace stands in for `keras.regularizers` as a whole: `from keras_reg
import regularizers` serves code written for `from keras import regularizers`,
with keras_reg's classes behind Keras's names (`l1`, `l2`, `l1_l2`, `get`,
`serialize`, `deserialize`); `Regularizer` and `OrthogonalRegularizer` are
Keras's own.

With `proximal=True`, `keras_reg.optimizers.Proximal` applies the L1 part (and
GroupLasso's whole penalty) as a proximal step after each update, which sets
weights exactly to zero: see docs/regularizers.md.
"""

import keras

from keras_reg.regularizers.group_penalty import GroupLasso
from keras_reg.regularizers.penalties import L1, L1L2, L2, ElasticNet

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "L1",
    "L1L2",
    "L2",
    "OrthogonalRegularizer",
    "Regularizer",
    "deserialize",
    "elastic_net",
    "get",
    "group_lasso",
    "l1",
    "l1_l2",
    "l2",
    "orthogonal_regularizer",
    "serialize",
]

# The base class and the one regularizer keras_reg does not replace.
Regularizer = keras.regularizers.Regularizer
OrthogonalRegularizer = keras.regularizers.OrthogonalRegularizer

# Keras's lower-case aliases, and ours.
l1 = L1
l2 = L2
l1_l2 = ElasticNet
elastic_net = ElasticNet
group_lasso = GroupLasso
orthogonal_regularizer = OrthogonalRegularizer

# The names `get` and `deserialize` resolve: Keras's (class names and their
# snake case, "l1l2" included), Keras's documented "l1_l2", and ours.
_OBJECTS = {
    "Regularizer": Regularizer,
    "regularizer": Regularizer,
    "L1": L1,
    "l1": L1,
    "L2": L2,
    "l2": L2,
    "L1L2": ElasticNet,
    "l1l2": ElasticNet,
    "l1_l2": ElasticNet,
    "ElasticNet": ElasticNet,
    "elastic_net": ElasticNet,
    "GroupLasso": GroupLasso,
    "group_lasso": GroupLasso,
    "OrthogonalRegularizer": OrthogonalRegularizer,
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def serialize(regularizer) -> dict:
    """Returns the config dict of `regularizer`, as `keras.regularizers.serialize`.

    Example:

    >>> serialize(L2(0.1))["registered_name"]
    'keras_reg>L2'
    """
    return keras.saving.serialize_keras_object(regularizer)


def deserialize(config, custom_objects=None):
    """Rebuilds a regularizer from `serialize`'s output or a name.

    As `keras.regularizers.deserialize`, with keras_reg's classes behind the
    names: `"l2"`, `{"class_name": "L2", "config": {...}}` and the config
    `keras.regularizers.serialize` writes for Keras's `L2` all give
    `keras_reg.regularizers.L2`. A registered name (`"keras_reg>L2"`, or a
    user's registered class) gives that class.

    Example:

    >>> deserialize({"class_name": "L1", "config": {"l1": 0.5}}).l1
    0.5
    """
    return keras.saving.deserialize_keras_object(
        config, module_objects=_OBJECTS, custom_objects=custom_objects
    )


def get(identifier):
    """Returns a regularizer for `identifier`, as `keras.regularizers.get`.

    None gives None; a dict is deserialized; a name gives that class built
    with its defaults (`"l1"` is `L1(0.01)`); a class is instantiated; any
    other callable is returned unchanged.

    Example:

    >>> get("l2").l2
    0.01
    >>> get(None) is None
    True
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        regularizer = deserialize(identifier)
    elif isinstance(identifier, str):
        regularizer = _OBJECTS.get(identifier)
    else:
        regularizer = identifier
    if not callable(regularizer):
        raise ValueError(f"Could not interpret regularizer identifier: {identifier}")
    if isinstance(regularizer, type):
        return regularizer()
    return regularizer
