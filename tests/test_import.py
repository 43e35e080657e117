import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, xlandcover; "
        "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'timm', 'distributed', "
        "'stackstac', 'pystac_client', 'geopandas', 'pyogrio') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_subclasses_a_builtin():
    from xlandcover import errors

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type)
        and issubclass(c, errors.XLandcoverError)
        and c is not errors.XLandcoverError
    ]
    assert len(classes) >= 10
    generic = (object, BaseException, Exception)
    for c in classes:  # a specific built-in a caller would catch: ValueError, LookupError, ...
        assert any(b.__module__ == "builtins" and b not in generic for b in c.__mro__), c


def test_library_is_quiet_unless_logging_is_configured():
    code = (
        "import logging, xlandcover\n"
        "from xlandcover.jobs import client_for\n"
        "{setup}\n"
        "with client_for('local', n_workers=1) as c: pass\n"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code.format(setup="")], capture_output=True, text=True, check=True
    )
    assert "Local cluster" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", code.format(setup="logging.basicConfig(level=logging.INFO)")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Local cluster: 1 worker(s)" in loud.stderr
