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
