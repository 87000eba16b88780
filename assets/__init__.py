"""Static files for the Dash app (CSS, icons). The app passes this folder's absolute path."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
