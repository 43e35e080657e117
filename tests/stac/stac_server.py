"""A real STAC API (stac-fastapi-geoparquet, from PyPI) on loopback, serving given items.

It runs from its own venv, ``.venv-stac`` (made by ``scripts/setup.sh`` from
``requirements/stac-server.txt``), as a separate process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv-stac" / "bin" / "python"

APP = """
import rustac, rustac_duckdb_extensions as rde
from stac_fastapi.geoparquet.api import create
ext = rde.extension_directory()
client = rustac.DuckdbClient(extension_directory=ext, install_extensions=False)
app = create(duckdb_client=client).app
"""


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(items: list[dict], root: Path, timeout: float = 60.0) -> tuple[str, subprocess.Popen]:
    """Serve ``items`` at ``http://127.0.0.1:PORT``; returns the URL and the process."""
    if not PYTHON.exists():
        raise ServerUnavailable(f"{PYTHON} is missing: run scripts/setup.sh to create .venv-stac")
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.json").write_text(json.dumps(items))
    (root / "stac_app.py").write_text(APP)
    subprocess.run(
        [
            str(PYTHON),
            "-c",
            "import json, sys, rustac; "
            "rustac.write_sync(sys.argv[2], json.load(open(sys.argv[1])))",
            str(root / "items.json"),
            str(root / "items.parquet"),
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    port = free_port()
    env = {**os.environ, "STAC_FASTAPI_GEOPARQUET_HREF": str(root / "items.parquet")}
    log = open(root / "server.log", "wb")  # noqa: SIM115  (kept open for the process)
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "uvicorn", "stac_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(
                f"the STAC server exited: {(root / 'server.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/collections", timeout=2) as r:
                if r.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise ServerUnavailable(f"the STAC server did not answer at {url} within {timeout} s")
