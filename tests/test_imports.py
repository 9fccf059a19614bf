"""The sans-I/O core imports no I/O machinery (DESIGN.md, convention 1); the package's names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fullduplex
import fullduplex.exceptions
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


class TestPublicNames:
    """What dir(), help() and editors see at the top level (issue 15)."""

    def test_dir_lists_public_names_only(self) -> None:
        names = dir(fullduplex)
        for private in ("Any", "TYPE_CHECKING", "importlib", "os", "annotations", "typing"):
            assert private not in names
        assert {"serve", "connect", "App", "WebSocket", "InvalidURI", "brokers", "sync"} <= set(
            names
        )
        assert all(not name.startswith("_") or name == "__version__" for name in names)

    def test_every_exception_is_exported(self) -> None:
        classes = [
            value
            for value in vars(fullduplex.exceptions).values()
            if isinstance(value, type)
            and issubclass(value, BaseException)
            and value.__module__ == "fullduplex.exceptions"
        ]
        assert len(classes) >= 20  # the check must see the tree, not an empty list
        for cls in classes:
            assert getattr(fullduplex, cls.__name__) is cls
            assert cls.__name__ in fullduplex.__all__

    def test_invalid_uri(self) -> None:
        with pytest.raises(fullduplex.InvalidURI):
            fullduplex.connect("http://127.0.0.1/")

    def test_all_resolves(self) -> None:
        for name in fullduplex.__all__:
            assert getattr(fullduplex, name) is not None
        assert fullduplex.brokers.MemoryBroker is not None

    def test_unknown_name_is_an_attribute_error(self) -> None:
        with pytest.raises(AttributeError, match="no_such_name"):
            fullduplex.no_such_name  # noqa: B018

    def test_help_shows_the_lazy_names(self) -> None:
        # In a fresh interpreter, before anything loaded them.
        code = (
            "import pydoc, fullduplex\n"
            "print(pydoc.render_doc(fullduplex, renderer=pydoc.plaintext))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=seconds(30),
            check=True,
        )
        for text in ("class InvalidURI", "connect(", "serve(", "class App", "ConnectionClosed"):
            assert text in result.stdout
