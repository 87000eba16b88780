"""The wheel ships every package: pyproject lists each folder with an __init__.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "packages missing from pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists folders that do not exist"


def test_the_dashboard_side_never_imports_torch() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "app").rglob("*.py")
        if "import torch" in p.read_text() or "from torch" in p.read_text()
    ]
    assert offenders == []


def test_importing_the_server_side_loads_neither_torch_nor_dash_needlessly() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import trainlight.app.server, trainlight.app.cli, trainlight.app.store.inbox\n"
        "assert 'torch' not in sys.modules, 'app imported torch'\n"
        "import trainlight.collectors.schema, trainlight.collectors.health.evaluator\n"
        "assert 'torch' not in sys.modules, 'schema/health imported torch'\n"
        "assert 'dash' in sys.modules\n"
        "import trainlight.collectors.monitor\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
