"""One error family: every exception xlandcover raises is an XLandcoverError and a built-in."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest

import xlandcover
from xlandcover import errors

PACKAGE = Path(xlandcover.__file__).parent
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _classes_defined_in_errors() -> list[type]:
    tree = ast.parse(Path(errors.__file__).read_text())
    names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    return [getattr(errors, n) for n in names]


def test_every_error_of_the_errors_module_subclasses_the_base_and_a_specific_builtin():
    defined = _classes_defined_in_errors()
    failures = [c for c in defined if issubclass(c, BaseException) and not issubclass(c, Warning)]
    warnings_ = [c for c in defined if issubclass(c, Warning)]
    assert errors.XLandcoverError in failures and errors.ChunkFailedError in failures
    generic = (object, BaseException, Exception)
    for c in failures:
        assert issubclass(c, errors.XLandcoverError), c
        if c is errors.XLandcoverError:
            continue
        specific = [b for b in c.__mro__ if b.__module__ == "builtins" and b not in generic]
        assert specific, f"{c.__name__} subclasses no specific built-in (ValueError, ...)"
    for w in warnings_:  # deprecations are FutureWarnings, the rest XLandcoverWarnings
        assert issubclass(w, errors.XLandcoverWarning | FutureWarning), w
    documented = [c for c in defined if not (c.__doc__ or "").strip()]
    assert not documented, f"undocumented errors: {documented}"


def _raise_sites(root: Path = PACKAGE) -> list[tuple[str, int, str]]:
    """(file, line, what) of every ``raise X`` / ``raise X(...)`` in the package."""
    sites = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else getattr(exc, "attr", "?")
            sites.append((str(path.relative_to(root.parent)), node.lineno, name))
    return sites


def test_no_raise_site_raises_a_plain_builtin():
    sites = _raise_sites()
    assert len(sites) > 200  # the scan sees the package
    plain = [f"{f}:{line} raises {name}" for f, line, name in sites if name in BUILTIN_EXCEPTIONS]
    assert not plain, "raise an xlandcover.errors class instead:\n" + "\n".join(plain)


def test_every_error_class_raised_by_name_is_an_xlandcover_error():
    for file, line, name in _raise_sites():
        value = getattr(errors, name, None)
        if inspect.isclass(value):
            assert issubclass(value, errors.XLandcoverError), f"{file}:{line} {name}"


def test_the_scan_sees_every_form_of_raise(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def f(e):\n    raise ValueError('x')\n    raise KeyError\n    raise errors.OSError()\n"
        "    raise e\n    raise\n"
    )
    names = [name for _, _, name in _raise_sites(tmp_path / "pkg")]
    assert names == ["ValueError", "KeyError", "OSError", "e"]


@pytest.mark.parametrize(
    "error, builtin",
    [
        (errors.PredictSettingsError, ValueError),
        (errors.InputTypeError, TypeError),
        (errors.ChunkFailedError, RuntimeError),
        (errors.OutputExistsError, FileExistsError),
        (errors.InputNotFoundError, FileNotFoundError),
        (errors.MissingDependencyError, ImportError),
        (errors.UnknownPresetError, errors.PresetError),
    ],
)
def test_errors_are_caught_by_the_builtin_a_caller_would_use(error, builtin):
    with pytest.raises(builtin):
        raise error("message")
