import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, xlandcover; "
        "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'timm', 'distributed', "
        "'stackstac', 'pystac_client') if m in sys.modules]; print(heavy)"
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
