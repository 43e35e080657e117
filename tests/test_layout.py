"""The layout is a contract: stages as subpackages, internal modules underscored, no public name
hiding a module, the accessor in step with the functions it forwards to."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import pytest
import xarray as xr

import xlandcover
from xlandcover import _compat
from xlandcover.accessor import FORWARDS, LandcoverAccessor, forwarded

PACKAGE = Path(xlandcover.__file__).parent
STAGES = ("io", "stac", "training", "model", "prediction", "evaluation", "output", "jobs")
TOP_LEVEL = {
    "__init__",
    "accessor",
    "cli",
    "errors",
    "plot",
    "_compat",
    "_deps",
    "_files",
    "_torch",
}


def test_the_package_is_one_subpackage_per_stage_and_a_few_top_level_modules():
    subpackages = {m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if m.ispkg}
    modules = {m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if not m.ispkg}
    assert subpackages - {"data"} == set(STAGES)
    assert modules | {"__init__"} == TOP_LEVEL


@pytest.mark.parametrize("stage", STAGES)
def test_modules_inside_a_stage_are_internal_and_its_init_is_its_public_surface(stage):
    package = importlib.import_module(f"xlandcover.{stage}")
    modules = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert modules and all(m.startswith("_") for m in modules), modules
    public = package.__all__
    assert public == sorted(public, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in public:
        assert hasattr(package, name), f"xlandcover.{stage}.{name}"
        assert not isinstance(getattr(package, name), types.ModuleType), name


def test_no_public_name_hides_a_module():
    modules = {m.name for m in pkgutil.iter_modules([str(PACKAGE)])}
    assert not set(xlandcover.__all__) & modules
    for name in ("predict", "train", "evaluate"):  # 0.1 bound these over their modules
        assert inspect.isfunction(getattr(xlandcover, name))
    module = importlib.import_module("xlandcover.prediction._predict")
    assert isinstance(module, types.ModuleType) and module.predict is xlandcover.predict


def test_patching_the_predict_modules_reaches_predict(monkeypatch, tiny_package):
    """0.1's ``xlandcover.predict._forward`` was the function's attribute: patching did nothing.
    Now the modules are modules: patching the engine's forward pass is seen by predict."""
    import xlandcover.prediction._engine as m

    from .conftest import make_image

    calls = []
    original = m.forward
    monkeypatch.setattr(m, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    xlandcover.predict(make_image(64, 64), tiny_package).compute()
    assert calls


def _relative_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        package = ".".join(["xlandcover", *path.relative_to(PACKAGE).parts[:-1]])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                names = [
                    f"{target}.{a.name}" if not node.module or a.name.startswith("_") else target
                    for a in node.names
                ]
                for name in names:
                    yield path.relative_to(PACKAGE.parent), node.lineno, name


def test_the_package_never_imports_through_an_old_path_or_a_subpackage_init():
    old = {f"xlandcover.{m}" for m in _compat.MOVED}
    stages = {f"xlandcover.{s}" for s in STAGES}
    for file, line, name in _relative_imports():
        assert name not in old, f"{file}:{line} imports {name} (an old path)"
        inside = str(file).split("/")[1] in STAGES or str(file).endswith("__init__.py")
        if name in stages and not inside:  # the top level and cli use the public surfaces
            continue
        if str(file).endswith("__init__.py"):
            continue
        assert name not in stages, f"{file}:{line} imports from the subpackage {name}"


@pytest.mark.parametrize("method", sorted(FORWARDS))
def test_accessor_methods_take_exactly_the_arguments_of_their_function(method):
    func = forwarded(method)
    theirs = list(inspect.signature(func).parameters.values())[1:]  # without the array
    ours = list(inspect.signature(getattr(LandcoverAccessor, method)).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in ours] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    doc = getattr(xr.DataArray.landcover, method).__doc__
    assert f"is ``{FORWARDS[method]}(obj, ...)``" in doc
    assert func.__doc__.splitlines()[0] in doc  # the function's own docstring follows


def test_accessor_docstrings_drop_only_the_array_argument():
    doc = xr.DataArray.landcover.predict.__doc__
    parameters = doc[doc.index("Parameters") :]
    assert "\n    image\n" not in parameters and "\n    model\n" in parameters
    assert "\n    window, overlap\n" in parameters and "\n    match_bands\n" in parameters


def test_the_version_is_single_sourced():
    from importlib.metadata import version

    assert version("xlandcover") == xlandcover.__version__
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "xlandcover.__version__"}
