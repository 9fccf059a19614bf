"""Benchmarks: fullduplex against other WebSocket libraries, side by side, from one command.

``python -m bench`` (``make bench``) runs every echo server in its own subprocess and drives it
with one library-neutral load generator (:mod:`bench.loadgen`), then prints the medians and the
ratios. See bench/README.md.
"""

from __future__ import annotations

__all__: list[str] = []
