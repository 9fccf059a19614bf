"""The modules that have a compiled twin, and the switch that turns the twins off.

The build compiles some modules of the pure-Python reference with Cython (declarations in the
``.pxd`` file next to each), into extension modules of the same name, which the import system
prefers to the source. With ``FULLDUPLEX_NO_EXTENSIONS`` set, :func:`use_source_only` (called by
``fullduplex/__init__.py``) makes those names load from their ``.py`` files instead, so the
reference runs, and is tested, even where the compiled build exists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, ModuleSpec, SourceFileLoader
from types import ModuleType

__all__ = ["COMPILED_MODULES", "use_source_only"]

#: Modules that setup.py compiles with Cython when Cython is available.
COMPILED_MODULES = frozenset(
    {
        "fullduplex.protocol.frames",
        "fullduplex.protocol.connection",
        "fullduplex.asyncio.connection",
        "fullduplex.app.inline",
    }
)


class _SourceOnlyFinder:
    """A meta path finder that finds COMPILED_MODULES as source files only."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Return the spec of the module's .py file, or None for every other module."""
        if fullname not in COMPILED_MODULES or not path:
            return None
        for entry in path:
            spec = FileFinder(entry, (SourceFileLoader, SOURCE_SUFFIXES)).find_spec(fullname)
            if spec is not None:
                return spec
        return None


def use_source_only() -> None:
    """Load COMPILED_MODULES from source from now on (modules already imported stay as they are)."""
    if not any(isinstance(finder, _SourceOnlyFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnlyFinder())
