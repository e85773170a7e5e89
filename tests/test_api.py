"""Package-wide contracts: public API, registration, saving and safe loading."""

import ast
import inspect
import json
import os
import pathlib
import zipfile

import keras
import numpy as np
import pytest
from helpers import REPO_ROOT, run_python

import keras_reg

PACKAGE_DIR = pathlib.Path(REPO_ROOT) / "keras_reg"
SUBPACKAGES = ["callbacks", "layers", "optimizers", "pruning", "regularizers"]


def _public_modules():
    modules = [keras_reg]
    for name in SUBPACKAGES:
        module = getattr(keras_reg, name, None)
        if module is not None:
            modules.append(module)
    return modules


def _public_classes():
    classes = {}
    for module in _public_modules():
        for name in module.__all__:
            obj = getattr(module, name)
            # Keras's own base class and OrthogonalRegularizer are re-exported.
            if inspect.isclass(obj) and obj.__module__.startswith("keras_reg"):
                classes[obj.__name__] = obj
    return sorted(classes.values(), key=lambda cls: cls.__name__)


def test_version_is_a_release_string():
    major, minor, patch = keras_reg.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_all_is_sorted_and_every_name_exists(module):
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


def test_top_level_names_are_the_subpackage_objects():
    for module in _public_modules()[1:]:
        for name in module.__all__:
            if name in keras_reg.__all__:
                assert getattr(keras_reg, name) is getattr(module, name)


def test_l1l2_is_an_alias_of_elastic_net():
    assert keras_reg.regularizers.L1L2 is keras_reg.regularizers.ElasticNet


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda cls: cls.__name__)
def test_every_public_class_is_registered_under_the_package(cls):
    name = keras.saving.get_registered_name(cls)
    assert name == f"keras_reg>{cls.__name__}"
    assert keras.saving.get_registered_object(name) is cls


def _library_sources():
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_package_string_lives_in_one_place():
    owners = []
    for path in _library_sources():
        text = path.read_text()
        if "register_keras_serializable" in text or 'package="keras_reg"' in text:
            owners.append(path.relative_to(PACKAGE_DIR).as_posix())
    assert owners == ["_api.py"]


def test_library_never_imports_private_keras_modules():
    offenders = []
    for path in _library_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(
                name == "keras.src" or name.startswith("keras.src.") for name in names
            ):
                offenders.append(str(path))
    assert offenders == []


def _own_names(tree):
    """Names a module binds to keras_reg's own modules and objects."""
    names = {"self", "cls"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "keras_reg"
        ):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name
                for alias in node.names
                if alias.name.startswith("keras_reg")
            )
    return names


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_accesses(path):
    """`obj._name` and `getattr(obj, "_name")` on objects keras_reg does not own."""
    tree = ast.parse(path.read_text())
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in own:
                continue
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            base = node.args[0]
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append(f"{path.name}:{node.lineno}: {node.args[1].value!r}")
    return found


def test_library_reads_no_private_attribute_of_keras_or_torch():
    # Private attributes change between releases without notice. keras_reg's
    # own (on `self`, `cls` and its own modules) are fine.
    offenders = [hit for path in _library_sources() for hit in _private_accesses(path)]
    assert offenders == []


def test_library_never_walks_the_call_stack():
    offenders = []
    for path in _library_sources():
        text = path.read_text()
        for marker in ("_getframe", "f_back", "currentframe", "inspect.stack"):
            if marker in text:
                offenders.append(f"{path.name}: {marker}")
    assert offenders == []


def _all_objects_model():
    regularizers = keras_reg.regularizers
    inputs = keras.Input(shape=(8,))
    x = keras.layers.Dense(
        16,
        kernel_regularizer=regularizers.L1(1e-3),
        bias_regularizer=regularizers.L2(1e-3),
    )(inputs)
    x = keras_reg.layers.BatchNormalization()(x)
    x = keras_reg.layers.Dropout(0.25, seed=3)(x)
    outputs = keras.layers.Dense(
        3, kernel_regularizer=regularizers.ElasticNet(l1=1e-4, l2=1e-3)
    )(x)
    return keras.Model(inputs, outputs)


def _train_briefly(model):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, size=(64,))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return x


def test_model_with_every_object_loads_in_a_fresh_process(tmp_path):
    model = _all_objects_model()
    x = _train_briefly(model)
    model_path = tmp_path / "all.keras"
    model.save(model_path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))

    result = run_python(
        f"""
        import json
        import keras
        import numpy as np
        import keras_reg

        model = keras.saving.load_model({str(model_path)!r}, safe_mode=True)
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "actual.npy")!r}, model.predict(x, verbose=0))
        def kind(obj):
            return type(obj).__module__.split(".")[0] + "." + type(obj).__name__

        kinds = []
        for layer in model.layers:
            kinds.append(kind(layer))
            for attr in ("kernel_regularizer", "bias_regularizer"):
                reg = getattr(layer, attr, None)
                if reg is not None:
                    kinds.append(kind(reg))
        print(json.dumps(kinds))
        """
    )
    assert result.returncode == 0, result.stderr
    kinds = json.loads(result.stdout.strip().splitlines()[-1])
    for expected in (
        "keras_reg.BatchNormalization",
        "keras_reg.Dropout",
        "keras_reg.L1",
        "keras_reg.L2",
        "keras_reg.ElasticNet",
    ):
        assert expected in kinds
    np.testing.assert_array_equal(
        np.load(tmp_path / "actual.npy"), np.load(tmp_path / "expected.npy")
    )


def _edit_saved_config(src, dst, edit):
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _find_layer_config(config, class_name):
    for layer in config["config"]["layers"]:
        if layer["class_name"] == class_name:
            return layer["config"]
    raise AssertionError(f"no {class_name} in the saved config")


def _find_regularizer_config(config, class_name):
    for layer in config["config"]["layers"]:
        for key in ("kernel_regularizer", "bias_regularizer"):
            reg = layer["config"].get(key)
            if reg and reg["class_name"] == class_name:
                return reg["config"]
    raise AssertionError(f"no {class_name} in the saved config")


@pytest.mark.parametrize(
    "class_name, finder, argument, bad_value, message, error",
    [
        (
            "Dropout",
            _find_layer_config,
            "rate",
            1.5,
            "Invalid value received for argument `rate`. Expected a float value "
            "between 0 and 1. Received: rate=1.5",
            ValueError,
        ),
        (
            "BatchNormalization",
            _find_layer_config,
            "momentum",
            "0.9",
            "Invalid value received for argument `momentum`. Expected a float in "
            "[0, 1]. Received: momentum='0.9'",
            ValueError,
        ),
        (
            "L1",
            _find_regularizer_config,
            "l1",
            -0.5,
            "Invalid value received for argument `l1`. Expected a non-negative "
            "float. Received: l1=-0.5",
            # Keras's Dense.from_config re-raises errors from its nested
            # objects as TypeError; our message is kept in its text.
            TypeError,
        ),
        (
            "Dropout",
            _find_layer_config,
            "rate",
            "__import__('os').system('touch PWNED')",
            "Invalid value received for argument `rate`. Expected a float value "
            "between 0 and 1. Received: "
            "rate=\"__import__('os').system('touch PWNED')\"",
            ValueError,
        ),
    ],
)
def test_edited_file_fails_to_load_naming_the_argument(
    tmp_path, class_name, finder, argument, bad_value, message, error
):
    model = _all_objects_model()
    original = tmp_path / "good.keras"
    model.save(original)
    edited = tmp_path / "edited.keras"

    def edit(config):
        finder(config, class_name)[argument] = bad_value

    _edit_saved_config(original, edited, edit)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(Exception) as info:
            keras.saving.load_model(edited, safe_mode=True)
    finally:
        os.chdir(cwd)
    assert type(info.value) is error
    assert message in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_loading_without_importing_keras_reg_names_the_registered_class(tmp_path):
    # Keras offers no hook to import a package while loading, so the README
    # tells users to import keras_reg first; Keras's error names
    # "keras_reg>Dropout", which is what the README tells them to look for.
    path = os.path.join(str(tmp_path), "model.keras")
    model = keras.Sequential([keras.Input((3,)), keras_reg.layers.Dropout(0.5)])
    model.save(path)
    code = f"""
        import keras
        try:
            keras.saving.load_model({path!r})
        except TypeError as error:
            print("without:", error)
        import keras_reg
        print("with:", type(keras.saving.load_model({path!r}).layers[0]).__module__)
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    without = result.stdout.split("without:")[1]
    assert "keras_reg>Dropout" in without
    assert "register_keras_serializable" in without
    assert "with: keras_reg.layers.dropout" in result.stdout
