"""The sans-I/O core imports no I/O machinery (DESIGN.md, convention 1)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import seconds

#: Modules that would tie the core to one I/O model.
IO_MODULES = frozenset({"asyncio", "selectors", "socket", "ssl", "threading"})

CORE = (
    "fullduplex.protocol.connection",
    "fullduplex.protocol.frames",
    "fullduplex.protocol.handshake",
    "fullduplex.protocol.deflate",
    "fullduplex.protocol.extensions",
)


def _imported(statement: str) -> set[str]:
    """Run ``statement`` in a fresh interpreter; return which IO_MODULES it imported."""
    code = (
        f"{statement}\nimport json, sys\nbad = {sorted(IO_MODULES)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in bad)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_sans_io_core_imports_no_io() -> None:
    imported = _imported(f"import {', '.join(CORE)}")
    # The core logs (DESIGN.md, convention 12), and the standard library's logging module
    # imports threading for its locks; that import, and only that one, is accepted.
    assert imported - _imported("import logging") == set()
    assert imported <= {"threading"}


def test_logging_baseline() -> None:
    # If logging ever pulled in more than threading, the exemption above would hide it.
    assert _imported("import logging") <= {"threading"}


def test_package_import_is_lazy() -> None:
    assert "asyncio" not in _imported("import fullduplex")


def test_exceptions_import_nothing() -> None:
    assert _imported("import fullduplex.exceptions") == set()


def test_check_detects_imports() -> None:
    # The check itself must be able to fail.
    assert _imported("import asyncio") >= {"asyncio", "selectors", "socket"}
