"""fullduplex.js as a file: its size budget (minified by esbuild, then gzip), its types (the
.d.ts compiled by tsc against a usage file, which must also reject a misuse), and its module
form under Node. The tools come from tests/interop/node (``make node-deps``)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fullduplex.app import script
from tests.helpers import seconds

NODE_DIR = Path(__file__).parents[1] / "interop" / "node"
BIN = NODE_DIR / "node_modules" / ".bin"
STATIC = Path(script.__file__).parents[1] / "static"
BUDGET = 8 * 1024  # bytes, minified + gzip: the core's budget (issue 12)

USAGE = """\
import { FullDuplex, backoff, isReconnectCode, RECONNECT_CODES, type Position } from "./fullduplex";
const c = new FullDuplex("/chat/lobby", { json: true, queuePolicy: "drop-oldest", minDelay: 300 });
c.addEventListener("close", (e) => {
  const code: number = e.code;
  const again: boolean = e.willReconnect;
  console.log(code, again, e.delay, e.reason);
});
c.addEventListener("recovery", (e) => console.log(e.recovered, e.replayed, e.reason));
c.onmessage = (e) => console.log(e.data);
const sent: boolean = c.send({ a: 1 });
const at: Position | null = c.position;
const state: 0 | 1 | 2 | 3 = c.readyState;
console.log(sent, at, state, backoff(1, 1, 2), isReconnectCode(1006), RECONNECT_CODES.length);
console.log(FullDuplex.OPEN, c.queued, c.attempts, c.recovered, c.url, c.protocol);
c.close(4000, "bye");
"""
MISUSE = (
    'import { FullDuplex } from "./fullduplex";\nnew FullDuplex("/x", { queuePolicy: "all" });\n'
)


def tool(name: str) -> Path:
    path = BIN / name
    assert path.exists(), f"{path} is missing: run `make node-deps`"
    return path


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize("form", ["module", "global"])
def test_size_budget(form: str) -> None:
    source = script.module_source() if form == "module" else script._global_source()
    done = subprocess.run(
        [
            str(tool("esbuild")),
            "--minify",
            "--loader=js",
            f"--format={'esm' if form == 'module' else 'iife'}",
        ],
        input=source,
        capture_output=True,
        timeout=seconds(60),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    minified = done.stdout
    packed = len(gzip.compress(minified, 9))
    print(
        f"fullduplex.js ({form}): {len(source)} B, {len(minified)} B minified, {packed} B min+gzip"
    )
    assert len(minified) < len(source)
    assert packed < BUDGET


def test_types_compile_and_reject_a_misuse(tmp_path: Path) -> None:
    shutil.copy(STATIC / "fullduplex.d.ts", tmp_path / "fullduplex.d.ts")
    (tmp_path / "use.ts").write_text(USAGE)
    (tmp_path / "misuse.ts").write_text(MISUSE)
    options = ["--noEmit", "--strict", "--lib", "es2022,dom", "--module", "esnext"]
    options += ["--moduleResolution", "bundler"]
    good = run(tool("tsc"), *options, "use.ts", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run(tool("tsc"), *options, "misuse.ts", cwd=tmp_path)
    assert bad.returncode != 0
    assert '"all"' in bad.stdout


def test_module_loads_under_node() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing"
    program = (
        f"const m = await import({json.dumps((STATIC / 'fullduplex.js').as_uri())});"
        "const d = Array.from({length: 1000}, () => m.backoff(3, 100, 1000));"
        "console.log(JSON.stringify({names: Object.keys(m).sort(),"
        " min: Math.min(...d), max: Math.max(...d), codes: m.RECONNECT_CODES,"
        " final: [1000, 1008, 4401].map(m.isReconnectCode)}));"
    )
    done = run(node, "--input-type=module", "-e", program)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["names"] == ["FullDuplex", "RECONNECT_CODES", "backoff", "isReconnectCode"]
    assert result["min"] >= 100 and result["max"] <= 1000
    assert result["codes"] == [1001, 1005, 1006, 1011, 1012, 1013, 1014]
    assert result["final"] == [False, False, False]
