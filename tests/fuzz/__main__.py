"""``make fuzz``: run every target of tests/fuzz/targets.py for a bounded time.

    python -m tests.fuzz [--seconds N] [TARGET ...]

Under atheris (coverage-guided, libFuzzer) when it is installed: each target runs in its own
process for N seconds, with its corpus in ``.fuzz/TARGET/`` (seeded from the valid messages
of test_fuzz.py) and any crashing input saved there as ``crash-*``. Without atheris, the
hypothesis tests of test_fuzz.py run again and again, with fresh random seeds, for N seconds
per target. The exit status is 1 if any target failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".fuzz"


def _seeds(name: str) -> list[bytes]:
    """Valid inputs to start a target's corpus from (parameter bytes first, as it reads)."""
    from tests.fuzz import test_fuzz  # noqa: PLC0415 - hypothesis only when needed

    if name in ("http_request_head", "server_handshake"):
        return [b"\x00\x00" + test_fuzz.REQUEST, b"\x01\x03" + test_fuzz.REQUEST]
    if name in ("frame_parser", "connection"):
        from fullduplex.protocol.frames import serialize_frame  # noqa: PLC0415

        frames = serialize_frame(1, b"hello", mask=b"abcd") + serialize_frame(9, b"p", mask=b"abcd")
        return [b"\x01\x01\x00" + frames, b"\x03\x07\x10" + frames]
    if name == "deflate":
        return [b"\x07\x08\x00" + test_fuzz.compressed(b"hello hello hello")]
    if name == "proxy_http_connect":
        return [b"\x00" + reply for reply in test_fuzz.CONNECT_REPLIES]
    return [b"\x00\x01" + reply for reply in test_fuzz.SOCKS_REPLIES]


def _run_atheris(name: str, seconds: int) -> bool:
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(_seeds(name)):
        (corpus / f"seed-{index}").write_bytes(seed)
    command = [
        sys.executable,
        "-m",
        "tests.fuzz",
        "--atheris-child",
        name,
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={corpus}/",
        str(corpus),
    ]
    # Bounded even if libFuzzer ignored its own limit.
    result = subprocess.run(command, cwd=ROOT, timeout=seconds + 120, check=False)
    return result.returncode == 0


def _atheris_child(name: str, libfuzzer_args: list[str]) -> None:
    import atheris  # noqa: PLC0415 - an optional tool

    from tests.fuzz.targets import TARGETS  # noqa: PLC0415

    # Coverage from every Python function loaded, the code under test above all (frames.py
    # from source included; the compiled modules are opaque to it, their results are
    # compared with the source's instead).
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *libfuzzer_args], TARGETS[name])
    atheris.Fuzz()


def _run_hypothesis(name: str, seconds: int) -> bool:
    os.environ.setdefault("FUZZ_EXAMPLES", "5000")
    from tests.fuzz import test_fuzz  # noqa: PLC0415

    test = getattr(test_fuzz, f"test_{name}")
    deadline = time.monotonic() + seconds
    rounds = 0
    # Bounded by the deadline; each round is max_examples fresh random examples.
    while time.monotonic() < deadline:
        try:
            test()
        except Exception as exc:  # reported, then the next target runs
            print(f"{name}: FAILED after {rounds} rounds: {exc!r}", file=sys.stderr)
            return False
        rounds += 1
    print(f"{name}: {rounds} rounds of {test_fuzz.EXAMPLES} examples, no failure")
    return True


def main() -> int:
    """Parse the options, run the targets, return the exit status."""
    if len(sys.argv) > 2 and sys.argv[1] == "--atheris-child":
        _atheris_child(sys.argv[2], sys.argv[3:])
        return 0  # pragma: no cover - atheris.Fuzz() exits the process itself
    from tests.fuzz.targets import TARGETS  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGETS))
    args = parser.parse_args()
    names = args.targets or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    print(f"fuzzing {len(names)} targets with {engine}, {args.seconds} s each", flush=True)
    run = _run_atheris if engine == "atheris" else _run_hypothesis
    failed = [name for name in names if not run(name, args.seconds)]
    if failed:
        print(f"FAILED: {', '.join(failed)} (inputs in {CORPUS}/TARGET/crash-*)", file=sys.stderr)
        return 1
    print("no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
