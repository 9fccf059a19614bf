"""Builds the optional compiled speedups; the pure-Python code is the reference.

Two kinds, both optional and both selected at import (FULLDUPLEX_NO_EXTENSIONS turns them off):

* ``fullduplex.protocol._speedups``, hand-written C: masking and the frame parser.
* The modules in ``fullduplex._compiled.COMPILED_MODULES``, compiled by Cython from their ``.py``
  source with the types declared in the ``.pxd`` next to each. Skipped without Cython.

Set FULLDUPLEX_BUILD_EXTENSION=no to skip them all, =yes to make a build failure fatal.
"""

import os

from setuptools import Extension, setup

build = os.environ.get("FULLDUPLEX_BUILD_EXTENSION", "auto")
optional = build != "yes"
CYTHON_SOURCES = [
    "src/fullduplex/protocol/frames.py",
    "src/fullduplex/protocol/connection.py",
    "src/fullduplex/asyncio/connection.py",
]

ext_modules = []
if build != "no":
    ext_modules.append(
        Extension(
            "fullduplex.protocol._speedups",
            sources=["src/fullduplex/protocol/_speedups.c"],
            optional=optional,
            extra_compile_args=["-O3"],
        )
    )
    try:
        from Cython.Build import cythonize
        from Cython.Compiler.Errors import CompileError
    except ImportError:
        if not optional:
            raise
    else:
        try:
            compiled = cythonize(
                [
                    Extension(
                        path[len("src/") : -len(".py")].replace("/", "."),
                        sources=[path],
                        optional=optional,
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
        except CompileError:
            if not optional:
                raise
            print("warning: Cython could not compile the speedups; using the pure-Python code")
        else:
            ext_modules.extend(compiled)

setup(ext_modules=ext_modules)
