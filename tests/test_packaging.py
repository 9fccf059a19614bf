"""The package as users get it: sdist and wheel built by ``python -m build``, installed into
fresh virtual environments, with and without a C compiler, then imported and used.

The venvs have no pip of their own (``--without-pip``): this environment's pip installs into
them (``pip --python``), which saves seconds per venv. The sdist installs build in isolation,
as ``pip install`` does for users, from the registry or pip's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import seconds

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent

#: The start of the one warning setup.py prints when it falls back to pure Python.
WARNING = "WARNING: fullduplex: the optional compiled speedups could not be built"

#: Run inside an installed venv, from a directory outside the checkout: an echo round trip
#: over 127.0.0.1, and which implementation of the frame layer was loaded.
ROUND_TRIP = """
import asyncio, json
import fullduplex
import fullduplex.protocol.frames as frames
from fullduplex.app.script import module_source

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with fullduplex.serve(echo, "127.0.0.1", 0) as server:
        async with fullduplex.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(bytes(range(256)) * 1000)
            binary = await ws.recv()
    print(json.dumps({
        "text": text,
        "binary_ok": binary == bytes(range(256)) * 1000,
        "frames": frames.__file__,
        "package": fullduplex.__file__,
        "script": module_source().decode().rstrip().splitlines()[-1],
    }))

asyncio.run(main())
"""


@dataclass
class Artefacts:
    """The built distributions."""

    sdist: Path
    wheel: Path


def _environment(**extra: str) -> dict[str, str]:
    """A clean environment: nothing that would point the venv at the checkout."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "FULLDUPLEX_NO_EXTENSIONS", "FULLDUPLEX_BUILD_EXTENSION"}
        and not name.startswith("VIRTUAL_ENV")
    }
    env.update(extra)
    return env


def _source_copy(target: Path) -> Path:
    """Copy the checkout's files (tracked, and new ones not ignored) as they are on disk.

    Building from a copy leaves the checkout alone (no build/ or egg-info in it) and keeps
    what a local build left there (compiled modules, Cython's C) out of the distributions.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=seconds(30),
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    """Build the sdist, then the wheel from it, as ``python -m build`` does by default."""
    out = tmp_path_factory.mktemp("dist")
    source = _source_copy(tmp_path_factory.mktemp("source") / "fullduplex")
    # --no-isolation: this environment already has the build requirements (setuptools,
    # Cython); the installs below check the isolated build users get.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=seconds(240),
        env=_environment(),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert WARNING not in result.stdout + result.stderr  # a compiler works here
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Artefacts(sdist, wheel)


def _venv(path: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        timeout=seconds(60),
    )
    return path / "bin" / "python"


def _install(python: Path, artefact: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pip install -v ARTEFACT`` into the venv of ``python`` (verbose: the build's output)."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-v", str(artefact)],
        capture_output=True,
        text=True,
        timeout=seconds(300),
        env=_environment(**env),
        check=False,
    )


def _round_trip(python: Path, cwd: Path) -> dict[str, object]:
    result = subprocess.run(
        [str(python), "-c", ROUND_TRIP],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        cwd=cwd,
        env=_environment(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    assert data["text"] == "hello"
    assert data["binary_ok"] is True
    # The installed copy, not the checkout.
    assert str(python.parent.parent) in str(data["package"])
    return data


class TestDistributions:
    """What is inside the sdist and the wheel."""

    def test_wheel_has_compiled_modules_and_no_sources_to_build(self, artefacts: Artefacts) -> None:
        names = zipfile.ZipFile(artefacts.wheel).namelist()
        assert not [name for name in names if name.endswith((".c", ".h", ".pxd"))]
        compiled = [name for name in names if name.endswith(".so")]
        assert len(compiled) == 5, compiled  # _speedups and the four Cython modules
        assert "fullduplex/py.typed" in names
        assert "fullduplex/protocol/_speedups.pyi" in names
        # The browser client and its types, served by every App.
        assert "fullduplex/static/fullduplex.js" in names
        assert "fullduplex/static/fullduplex.d.ts" in names
        assert any(name.endswith("licenses/LICENSE") for name in names)

    def test_wheel_is_small(self, artefacts: Artefacts) -> None:
        # Compiled with -g0: about 0.5 MB; with debug information it was several times that.
        assert artefacts.wheel.stat().st_size < 2_000_000

    def test_sdist_has_what_a_build_needs(self, artefacts: Artefacts) -> None:
        with tarfile.open(artefacts.sdist) as sdist:
            names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        for needed in (
            "setup.py",
            "pyproject.toml",
            "LICENSE",
            "CHANGELOG.md",
            "README.md",
            "src/fullduplex/protocol/_speedups.c",
            "src/fullduplex/protocol/connection.pxd",
            "src/fullduplex/py.typed",
            "src/fullduplex/static/fullduplex.js",
            "src/fullduplex/static/fullduplex.d.ts",
            "tests/helpers.py",
        ):
            assert needed in names
        # Cython regenerates its C: none of it ships.
        assert "src/fullduplex/protocol/frames.c" not in names
        assert not [name for name in names if name.endswith(".so")]
        assert not [name for name in names if "node_modules" in name]

    def test_metadata(self, artefacts: Artefacts) -> None:
        with zipfile.ZipFile(artefacts.wheel) as wheel:
            (path,) = [name for name in wheel.namelist() if name.endswith("METADATA")]
            metadata = wheel.read(path).decode()
        assert "License-Expression: MIT" in metadata
        assert "Classifier: Typing :: Typed" in metadata
        for extra in ("redis", "fast", "reload", "uvloop", "docs", "test"):
            assert f"Provides-Extra: {extra}" in metadata
        assert 'Requires-Dist: redis>=5; extra == "redis"' in metadata


@pytest.fixture(scope="module")
def installs(
    artefacts: Artefacts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Path, subprocess.CompletedProcess[str]]]]:
    """Five installs, in parallel: the wheel; the sdist with a compiler, with one but told to
    skip the build, without one, and without one where the build is required."""
    base = tmp_path_factory.mktemp("venvs")
    plans = {
        "wheel": (artefacts.wheel, {}),
        "sdist": (artefacts.sdist, {}),
        "skipped": (artefacts.sdist, {"FULLDUPLEX_BUILD_EXTENSION": "no"}),
        "no-compiler": (artefacts.sdist, {"CC": "/nonexistent/gcc"}),
        "required": (
            artefacts.sdist,
            {"CC": "/nonexistent/gcc", "FULLDUPLEX_BUILD_EXTENSION": "yes"},
        ),
    }
    pythons = {name: _venv(base / name) for name in plans}
    with ThreadPoolExecutor(len(plans)) as pool:
        futures = {
            name: pool.submit(_install, pythons[name], artefact, **env)
            for name, (artefact, env) in plans.items()
        }
        yield {name: (pythons[name], future.result()) for name, future in futures.items()}


class TestInstall:
    """Installed into fresh venvs, then used over 127.0.0.1."""

    def test_wheel(
        self, installs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
    ) -> None:
        python, result = installs["wheel"]
        assert result.returncode == 0, result.stderr[-3000:]
        data = _round_trip(python, python.parent)
        assert str(data["frames"]).endswith(".so")
        assert str(data["script"]).startswith("export { FullDuplex")

    def test_sdist_with_compiler(
        self, installs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
    ) -> None:
        python, result = installs["sdist"]
        assert result.returncode == 0, result.stderr[-3000:]
        assert WARNING not in result.stdout + result.stderr
        data = _round_trip(python, python.parent)
        assert str(data["frames"]).endswith(".so")

    def test_sdist_told_to_skip_the_build_is_pure_python_without_a_warning(
        self, installs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
    ) -> None:
        python, result = installs["skipped"]
        assert result.returncode == 0, result.stderr[-3000:]
        assert WARNING not in result.stdout + result.stderr  # asked for: nothing to warn of
        data = _round_trip(python, python.parent)
        assert str(data["frames"]).endswith("frames.py")
        assert not list(Path(str(data["package"])).parent.rglob("*.so"))

    def test_sdist_without_compiler_falls_back_with_one_warning(
        self, installs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
    ) -> None:
        python, result = installs["no-compiler"]
        assert result.returncode == 0, result.stderr[-3000:]
        output = result.stdout + result.stderr
        assert output.count(WARNING) == 1, output[-3000:]
        assert "/nonexistent/gcc" in output  # the warning says why
        data = _round_trip(python, python.parent)
        assert str(data["frames"]).endswith("frames.py")  # the pure-Python reference
        site = Path(str(data["package"])).parent
        assert not list(site.rglob("*.so"))
        assert not list(site.rglob("*.c"))

    def test_required_build_without_compiler_fails(
        self, installs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
    ) -> None:
        python, result = installs["required"]
        assert result.returncode != 0
        assert WARNING not in result.stdout + result.stderr
        assert "/nonexistent/gcc" in result.stdout + result.stderr
        assert not list((python.parent.parent / "lib").glob("python*/site-packages/fullduplex"))
