"""Cross-process broadcast through Redis: fullduplex against python-socketio and Channels.

One room of N WebSocket connections (1,000 by default) spread over two server processes of
one library, one publisher process outside both, one redis-server started for the run. Each
256 B message carries its send time (``time.monotonic_ns``, one clock for every process of
the machine); the receivers count deliveries and measure publish-to-deliver latency. See
``bench/README.md`` ("Cross-process broadcast") and ``python -m bench.broadcast --help``.

Modules: :mod:`.payload` (the message format), :mod:`.servers` (how each library is served),
:mod:`.receiver` (the load: N raw WebSocket clients), :mod:`.publisher` (the outside
publisher), :mod:`.redis_server`, :mod:`.runner` (one run, side by side) and the apps each
server process serves (:mod:`.fd_app`, :mod:`.sio_server`, :mod:`.channels_app`).
"""
