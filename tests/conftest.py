"""Shared fixtures. ``shared_data`` is ``../shared/data`` beside the project checkout: the real
corpora of the application tasks, never committed here. Tests that need one of its folders
skip, saying which folder is missing, where it is absent (e.g. a CI machine without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """``shared_data("sst")`` -> the folder's Path, or skip with the reason."""

    def folder(name: str) -> Path:
        path = SHARED_DATA / name
        if not path.is_dir():
            pytest.skip(f"real-data test: {path} is absent (the ../shared/data corpora are not "
                        f"part of the project)")
        return path

    return folder
