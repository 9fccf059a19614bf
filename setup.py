"""Builds the optional C accelerator; the pure-Python code is the reference.

Set FULLDUPLEX_BUILD_EXTENSION=no to skip it, =yes to make a build failure fatal.
"""

import os

from setuptools import Extension, setup

build = os.environ.get("FULLDUPLEX_BUILD_EXTENSION", "auto")
ext_modules = []
if build != "no":
    ext_modules.append(
        Extension(
            "fullduplex.protocol._speedups",
            sources=["src/fullduplex/protocol/_speedups.c"],
            optional=build != "yes",
            extra_compile_args=["-O3"],
        )
    )

setup(ext_modules=ext_modules)
