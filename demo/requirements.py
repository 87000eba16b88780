"""What `trainlight demo` needs beyond the dashboard: checked before anything imports it.

The dashboard installs without torch, scikit-learn or rich (the Docker image has none of them);
`trainlight demo` then says which are missing and how to install them, instead of a traceback.
"""

from __future__ import annotations

import importlib.util

# import name -> distribution name
NEEDED = {"torch": "torch", "sklearn": "scikit-learn", "rich": "rich"}
INSTALL_HINT = "pip install 'trainlight[demo]'"


def missing_requirements() -> list[str]:
    """Distributions the demo needs that are not installed, in a stable order."""
    return [dist for module, dist in NEEDED.items() if not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or an import hook refusing it
        return False
