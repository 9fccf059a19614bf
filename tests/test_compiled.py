"""The Cython-compiled twins (fullduplex/_compiled.py): built, loaded, and switched off on demand.

A missing compiled module fails here unless FULLDUPLEX_NO_EXTENSIONS is set, so a build that
silently fell back to pure Python cannot pass for the fast one.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from fullduplex._compiled import COMPILED_MODULES
from tests.helpers import seconds

__all__: list[str] = []


def _origins(no_extensions: bool) -> dict[str, str]:
    """Import every compiled module in a fresh interpreter; return where each came from."""
    env = {k: v for k, v in os.environ.items() if k != "FULLDUPLEX_NO_EXTENSIONS"}
    if no_extensions:
        env["FULLDUPLEX_NO_EXTENSIONS"] = "1"
    code = (
        "import importlib, json\n"
        f"names = {sorted(COMPILED_MODULES)!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds(30),
    )
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize("name", sorted(COMPILED_MODULES))
def test_this_process_uses_the_expected_build(name: str) -> None:
    origin = importlib.import_module(name).__file__ or ""
    if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
        assert origin.endswith(".py")
    else:
        assert origin.endswith(".so"), f"{name} is not compiled: run `make extension`"


def test_switch_selects_the_source() -> None:
    assert all(origin.endswith(".py") for origin in _origins(no_extensions=True).values())


def test_compiled_by_default() -> None:
    origins = _origins(no_extensions=False)
    assert all(origin.endswith(".so") for origin in origins.values()), origins
