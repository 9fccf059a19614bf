"""Builds the optional compiled speedups; the pure-Python code is the reference.

Two kinds, both optional and both selected at import (FULLDUPLEX_NO_EXTENSIONS turns them off):

* ``fullduplex.protocol._speedups``, hand-written C: masking and the frame parser.
* The modules in ``fullduplex._compiled.COMPILED_MODULES``, compiled by Cython from their ``.py``
  source with the types declared in the ``.pxd`` next to each.

``FULLDUPLEX_BUILD_EXTENSION`` chooses:

* ``auto`` (the default): build them when possible. Any failure (no C compiler, a compiler
  error, no Cython, a Cython error) prints one warning and installs the pure-Python code.
* ``no``: skip them (a pure-Python build, no compiler needed).
* ``yes``: build them or fail the installation.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 59 vendors the distutils errors here
    from setuptools.errors import (
        CCompilerError,
        CompileError,
        ExecError,
        LinkError,
        PlatformError,
    )

    BUILD_ERRORS: tuple[type[BaseException], ...] = (
        CCompilerError,
        CompileError,
        ExecError,
        LinkError,
        PlatformError,
        OSError,
        ImportError,
    )
except ImportError:  # pragma: no cover - an old setuptools
    from distutils.errors import (
        CCompilerError,
        CompileError,
        DistutilsExecError,
        DistutilsPlatformError,
    )

    BUILD_ERRORS = (
        CCompilerError,
        CompileError,
        DistutilsExecError,
        DistutilsPlatformError,
        OSError,
        ImportError,
    )

CHOICES = ("auto", "yes", "no")
BUILD = os.environ.get("FULLDUPLEX_BUILD_EXTENSION", "auto").strip().lower() or "auto"
if BUILD not in CHOICES:
    sys.exit(f"FULLDUPLEX_BUILD_EXTENSION must be one of {', '.join(CHOICES)}, not {BUILD!r}")
REQUIRED = BUILD == "yes"

CYTHON_SOURCES = [
    "src/fullduplex/protocol/frames.py",
    "src/fullduplex/protocol/connection.py",
    "src/fullduplex/asyncio/connection.py",
    "src/fullduplex/app/inline.py",
]

#: The one warning an automatic build prints when it falls back to pure Python.
WARNING = (
    "WARNING: fullduplex: the optional compiled speedups could not be built ({why}); "
    "installing the pure-Python code, which is complete and passes the same tests, only slower. "
    "Set FULLDUPLEX_BUILD_EXTENSION=no to skip the build, =yes to make this an error."
)

_warned = False


def warn_fallback(why: object) -> None:
    """Print WARNING once per build, however many parts failed."""
    global _warned
    if not _warned:
        _warned = True
        print(WARNING.format(why=why), file=sys.stderr, flush=True)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure-Python build unless the build is required."""

    def run(self) -> None:
        """Build every extension; on a failure, warn once (auto) or raise (yes)."""
        try:
            super().run()
        except BUILD_ERRORS as exc:
            if REQUIRED:
                raise
            warn_fallback(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Any) -> None:
        """Build one extension; after a first failure, skip the rest (one warning, no noise)."""
        if _warned and not REQUIRED:
            return
        if self.compiler.compiler_type == "unix":
            # No debug information: it would make each module several times larger.
            ext.extra_compile_args = [*ext.extra_compile_args, "-g0"]
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            if REQUIRED:
                raise
            warn_fallback(f"{type(exc).__name__}: {exc}")


def extensions() -> list[Extension]:
    """The extension modules to build: all (auto, yes), none (no), only the C one (no Cython)."""
    if BUILD == "no":
        return []
    # optional=False: failures reach OptionalBuildExt, which decides (one warning, or fatal).
    modules = [
        Extension(
            "fullduplex.protocol._speedups",
            sources=["src/fullduplex/protocol/_speedups.c"],
            extra_compile_args=["-O3"],
        )
    ]
    try:
        from Cython.Build import cythonize  # noqa: PLC0415 (optional)
        from Cython.Compiler.Errors import CompileError as CythonError  # noqa: PLC0415
    except ImportError as exc:
        if REQUIRED:
            raise
        warn_fallback(f"Cython is not installed: {exc}")
        return modules
    try:
        modules.extend(
            cythonize(
                [
                    Extension(
                        path[len("src/") : -len(".py")].replace("/", "."),
                        sources=[path],
                        extra_compile_args=["-O2"],
                    )
                    for path in CYTHON_SOURCES
                ],
                compiler_directives={
                    "language_level": 3,
                    # The annotations are for mypy and readers; the .pxd files give the C types.
                    "annotation_typing": False,
                    "binding": True,
                    "embedsignature": True,
                },
                quiet=True,
            )
        )
    except (CythonError, *BUILD_ERRORS) as exc:
        if REQUIRED:
            raise
        warn_fallback(f"Cython failed: {exc}")
    return modules


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
