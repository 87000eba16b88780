"""The wheel ships every package: pyproject lists each folder with an __init__.py."""

from __future__ import annotations

import subprocess
import sys
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
        "import trainlight.app.server, trainlight.app.cli, trainlight.app.store.ingest.inbox\n"
        "assert 'torch' not in sys.modules, 'app imported torch'\n"
        "import trainlight.collectors.schema, trainlight.collectors.health.evaluator\n"
        "assert 'torch' not in sys.modules, 'schema/health imported torch'\n"
        "assert 'dash' in sys.modules\n"
        "import trainlight.collectors.monitor\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# The orchestration half of trainlight.demo: what `trainlight demo` imports before any training.
TORCH_FREE_DEMO_MODULES = (
    "catalogue",
    "command",
    "dashboard",
    "events",
    "jobs",
    "progress",
    "recipes",
    "requirements",
)

# Makes torch and scikit-learn look uninstalled, as in the dashboard-only (Docker) install.
_HIDE_TRAINING_PACKAGES = (
    "import sys\n"
    "class Hide:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'sklearn'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Hide())\n"
)


def test_the_demo_orchestration_imports_without_torch() -> None:
    import subprocess
    import sys

    modules = ", ".join(f"trainlight.demo.{m}" for m in TORCH_FREE_DEMO_MODULES)
    code = (
        _HIDE_TRAINING_PACKAGES + f"import {modules}\n"
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules\n"
        "from trainlight.app.cli import main\n"
        "try:\n"
        "    main(['demo', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert main(['demo', '--quick', '--no-serve', '--dir', sys.argv[1]]) == 2\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "never-created-store"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--no-serve" in result.stdout
    assert "trainlight demo needs torch, scikit-learn: pip install 'trainlight[demo]'" in (
        result.stderr
    )


def test_the_segment_format_loads_neither_the_health_rules_nor_the_migrations() -> None:
    """Collectors import the wire format; the rules load only where a run is judged, the DuckDB
    migrations only in the server."""
    code = (
        "import sys, trainlight.collectors.schema, trainlight.collectors.wire\n"
        "loaded = [m for m in sys.modules if m.startswith('trainlight.collectors.health.rules')"
        " or m == 'trainlight.app.store.migrations' or m == 'duckdb']\n"
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_badge_table_has_one_row_per_registered_signal() -> None:
    from trainlight.collectors.health.registry import signal_names

    readme = (ROOT / "README.md").read_text()
    table = readme.split("| signal | green | amber | red | what to do when red |", 1)[1]
    rows = [line for line in table.split("\n\n", 1)[0].splitlines() if line.startswith("| `")]
    assert sorted(row.split("`")[1] for row in rows) == sorted(signal_names())
