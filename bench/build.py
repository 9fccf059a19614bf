"""Compile the C load generator (bench/loadgen.c) once per version of its source.

``python -m bench.build`` prints the path of the binary. The binary lands in ``bench/.build/``
(gitignored) under a name holding a hash of the source and the compiler command, so an edited
source is rebuilt and an unchanged one is not; concurrent builds are safe (each compiles to a
temporary name and renames it into place).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["BUILD_DIR", "CFLAGS", "SOURCE", "BuildError", "loadgen_path"]

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BUILD_DIR = SOURCE.parent / ".build"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
LIBS = ("-lz",)


class BuildError(Exception):
    """The load generator cannot be built here (no compiler, no zlib headers, or an error)."""


def _zlib_header_present(compiler: str) -> bool:
    """Ask the compiler itself whether ``#include <zlib.h>`` resolves."""
    probe = subprocess.run(
        [compiler, "-E", "-x", "c", "-", "-o", os.devnull],
        input="#include <zlib.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def loadgen_path() -> Path:
    """Return the path of the compiled load generator, compiling it first if needed.

    Raises:
        BuildError: If gcc or zlib.h is missing, or the source does not compile.
    """
    compiler = shutil.which("gcc")
    if compiler is None:
        raise BuildError("gcc not found: install it (Debian: apt-get install gcc)")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join((*CFLAGS, *LIBS)).encode()).hexdigest()[:16]
    target = BUILD_DIR / f"loadgen-{digest}"
    if target.exists():
        return target
    if not _zlib_header_present(compiler):
        raise BuildError("zlib.h not found: install zlib's headers (Debian: zlib1g-dev)")
    BUILD_DIR.mkdir(exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".loadgen-", dir=BUILD_DIR)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *CFLAGS, "-o", temporary, str(SOURCE), *LIBS],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(f"gcc failed on {SOURCE.name}:\n{result.stderr.strip()}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    # Older builds are dead weight: keep only the current one.
    for old in BUILD_DIR.glob("loadgen-*"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    try:
        print(loadgen_path())
    except BuildError as exc:
        print(f"cannot build the load generator: {exc}", file=sys.stderr)
        sys.exit(1)
