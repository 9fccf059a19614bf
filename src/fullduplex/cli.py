"""The ``fullduplex`` command line: ``echo``, ``demo``, ``serve`` servers; ``connect``, ``drain``.

Each server prints one line with its URL as the first line of standard output, flushed (tests,
conformance suites and scripts read it to learn the port), for instance ``fullduplex echo
server listening on ws://127.0.0.1:PORT``; then it serves until SIGINT or SIGTERM, which close
every connection with 1001 and exit with status 0.

``--workers N`` (echo, serve) runs N processes on the same port and ``--reload`` (serve)
restarts the server when the app's code changes: see :mod:`fullduplex.workers`. The
``connect`` client lives in :mod:`fullduplex.cli_connect`, ``drain`` (SIGTERM to a server
started with ``--pidfile``, then wait for it to exit) in :mod:`fullduplex.cli_drain`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import __version__, proxy_config
from .asyncio.connection import DEFAULT_CLOSE_TIMEOUT
from .asyncio.server import Server, serve
from .cli_connect import add_connect_parser, byte_count
from .cli_drain import add_drain_parser, remove_pidfile, write_pidfile
from .workers import Supervisor, WorkerChannel, listening_sockets

__all__ = ["build_parser", "echo_handler", "main"]

_ECHO_MAX_MESSAGE_SIZE = 64 * 2**20  # conformance suites send messages of 16 MiB
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


async def echo_handler(ws: Any) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def _urls(args: argparse.Namespace, port: int) -> tuple[str, str]:
    """The server's http(s):// and ws(s):// base URLs, without a trailing slash."""
    host = args.host
    shown = f"[{host}]" if ":" in host else host
    secure = "s" if args.certfile else ""
    return f"http{secure}://{shown}:{port}", f"ws{secure}://{shown}:{port}"


def _announce(args: argparse.Namespace, port: int) -> None:
    """Write the pid file, if asked, then print the first line of standard output (flushed at
    once: tools wait for it). Called in the process that drains on SIGTERM: the server, or
    the supervisor of its workers."""
    if getattr(args, "pidfile", None):
        write_pidfile(args.pidfile)
    http, ws = _urls(args, port)
    if args.command == "echo":
        print(f"fullduplex echo server listening on {ws}", flush=True)
    elif args.command == "demo":
        print(f"fullduplex demo on {http}/", flush=True)
        print(
            f"\n  {http}/echo.html    echo (WebSocket {ws}/echo)"
            f"\n  {http}/chat.html    chat rooms"
            f"\n  {http}/snake.html   multiplayer snake"
            "\n\nPress Ctrl+C to stop.",
            flush=True,
        )
    else:
        print(f"fullduplex app listening on {http} and {ws}", flush=True)
        if sys.stdout.isatty():  # pragma: no cover - tests are not on a terminal
            print("Press Ctrl+C to stop.", flush=True)


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from --certfile/--keyfile, or None without them.

    Raises:
        OSError, ssl.SSLError: A file cannot be read, or the key does not fit the certificate.
    """
    if args.certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


# ---- what each server command serves ---------------------------------------------------------


def _find_examples_root() -> Path | None:
    """Return the directory holding ``examples/demo.py``: the source checkout or the cwd.

    The demo ships with the repository, not the wheel: an editable install finds it next to
    ``src/``; otherwise the current directory is tried.
    """
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "demo.py").is_file():
            return root
    return None


def _load_demo_app(root: Path) -> Any:
    """Import ``examples.demo`` from ``root`` and return its ``app``.

    Raises:
        ImportError: If ``examples`` resolves to another package than ``root/examples``.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("examples.demo")
    where = Path(module.__file__ or "").resolve()
    if not where.is_relative_to(root / "examples"):
        raise ImportError(f"'examples' was imported from {where}, not from {root}")
    return module.app


def _ensure_cwd_importable() -> None:
    # As with ``python -m``: ``fullduplex serve myapp:app`` finds ./myapp.py from the
    # installed command too.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _load_app(spec: str) -> Any:
    """Import ``module:attribute`` (attribute ``app`` by default) and return the attribute.

    Raises:
        ImportError: The module cannot be imported.
        AttributeError: It has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ImportError(f"no module in {spec!r}: use module:attribute")
    _ensure_cwd_importable()
    target: Any = importlib.import_module(module_name)
    for name in (attribute or "app").split("."):
        target = getattr(target, name)
    return target


def _app_directory(spec: str) -> Path:
    """The directory ``--reload`` watches: that of the app's top-level package or module.

    Found without importing anything, so the supervisor runs none of the app's code.

    Raises:
        ImportError: The module cannot be found.
    """
    top = spec.partition(":")[0].partition(".")[0]
    _ensure_cwd_importable()
    found = importlib.util.find_spec(top) if top else None
    if found is None:
        raise ImportError(f"no module named {top!r}")
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    if found.origin is None:
        raise ImportError(f"module {top!r} has no file to watch")
    return Path(found.origin).parent


def _server_factory(args: argparse.Namespace) -> Callable[..., Server] | str:
    """Return ``make(host, port, **options) -> Server`` for the command, or an error message."""
    if args.command == "echo":
        options: dict[str, Any] = {
            "compression": None if args.no_compression else "deflate",
            "max_message_size": args.max_message_size,
        }

        def make_echo(host: str, port: int, **more: Any) -> Server:
            return serve(echo_handler, host, port, **options, **more)

        return make_echo
    if args.command == "demo":
        root = _find_examples_root()
        if root is None:
            return (
                "cannot find examples/demo.py (looked next to the fullduplex sources and in "
                "the current directory); run it from a fullduplex source checkout"
            )
        try:
            demo = _load_demo_app(root)
        except ImportError as exc:
            return f"cannot load the demo from {root}: {exc}"
        error = _use_broker(demo, args)
        if error is not None:
            return error
        return demo.serve  # type: ignore[no-any-return]
    # Imported here: the other commands need not load the framework.
    from .app import App  # noqa: PLC0415

    try:
        app = _load_app(args.app)
    except (ImportError, AttributeError) as exc:
        return f"cannot load {args.app}: {exc}"
    drain_timeout = getattr(args, "drain_timeout", None)
    if drain_timeout is not None and not getattr(args, "asgi", False):
        # An App's sessions end when their connections close; only an ASGI application can
        # go on running after its WebSocket closed, which is what this bounds.
        return "--drain-timeout: for an ASGI application, with --asgi"
    if getattr(args, "asgi", False):
        app_only = [
            option
            for option, given in (
                ("--health", getattr(args, "health", False)),
                ("--metrics", getattr(args, "metrics", False)),
                ("--max-connections", getattr(args, "max_connections", None)),
                ("--max-per-ip", getattr(args, "max_per_ip", None)),
                ("--accept-rate", getattr(args, "accept_rate", None)),
            )
            if given
        ]
        if app_only:
            # They configure a fullduplex App; an ASGI application has its own ways.
            return f"{', '.join(app_only)}: for a fullduplex App, not with --asgi"
        return _asgi_factory(args, app)
    if not isinstance(app, App):
        return f"{args.app} is a {type(app).__name__}, not a fullduplex.app.App"
    error = _use_broker(app, args)
    if error is not None:
        return error
    compression = None if args.no_compression else "deflate"

    def make_app(host: str, port: int, **more: Any) -> Server:
        return app.serve(host, port, compression=compression, **more)

    return make_app


def _asgi_factory(args: argparse.Namespace, app: Any) -> Callable[..., Server] | str:
    """``serve --asgi``: the server factory of an ASGI 3 application."""
    from .asgi.server import DEFAULT_DRAIN_TIMEOUT, serve_asgi  # noqa: PLC0415

    if not callable(app):
        return f"{args.app} is a {type(app).__name__}, not an ASGI application"
    compression = None if args.no_compression else "deflate"
    drain_timeout = getattr(args, "drain_timeout", None)
    if drain_timeout is None:
        drain_timeout = DEFAULT_DRAIN_TIMEOUT

    def make_asgi(host: str, port: int, **more: Any) -> Server:
        return serve_asgi(
            app, host, port, compression=compression, drain_timeout=drain_timeout, **more
        )

    return make_asgi


def _use_broker(app: Any, args: argparse.Namespace) -> str | None:
    """Give the app the broker of ``--broker``, the health routes of ``--health`` and the
    limits of ``--max-connections``, ``--max-per-ip`` and ``--accept-rate``; return an error
    message if it cannot be done."""
    from .app import Limits  # noqa: PLC0415

    try:
        if getattr(args, "health", False):
            app.health_routes()
        if getattr(args, "metrics", False):
            app.metrics_route()
        limits = Limits(
            max_connections=getattr(args, "max_connections", None),
            max_per_ip=getattr(args, "max_per_ip", None),
            rate=getattr(args, "accept_rate", None),
        )
        if limits != Limits():
            app.use_limits(limits)
    except ValueError as exc:
        return str(exc)
    url = getattr(args, "broker", None)
    if not url:
        return None
    from .brokers import broker_from_url  # noqa: PLC0415

    try:
        app.use_broker(broker_from_url(url))
    except (ValueError, ImportError, RuntimeError) as exc:
        return f"--broker {url}: {exc}"
    return None


# ---- running a server: in this process, or in supervised workers -----------------------------


async def _serve_until_signal(
    make: Callable[[], Server],
    on_listening: Callable[[Server], object],
    drain: float = 0.0,
    drain_code: int = 1001,
) -> None:
    """Serve until SIGINT or SIGTERM; then close every connection with ``drain_code``, spread
    over ``drain`` seconds (0: all at once with 1001)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, request_stop)
    try:
        async with make() as server:
            on_listening(server)
            await stop
            # A drain even when it is not spread: a handshake already under way opens and is
            # closed with the rest (a 503 or a reset there is a refused connection to a
            # client that a sibling on the same port would have served).
            await server.drain(drain, code=drain_code, timeout=drain + _DRAIN_GRACE)
            # Leaving the block closes the server: 1001 to every client, handlers awaited.
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


# After a drain's spread, what its last connections have to finish their close handshake:
# as long as a close handshake may take (close_timeout's default), as before drains.
_DRAIN_GRACE = DEFAULT_CLOSE_TIMEOUT

# Optional loop packages: option -> (module, the extra that installs it).
_LOOP_PACKAGES = {"--uvloop": ("uvloop", "uvloop"), "--aiofastnet": ("aiofastnet", "fast")}


def _run(coro: Coroutine[Any, Any, None], use_uvloop: bool, use_aiofastnet: bool = False) -> int:
    modules: dict[str, Any] = {}
    for option, asked in (("--uvloop", use_uvloop), ("--aiofastnet", use_aiofastnet)):
        if not asked:
            continue
        name, extra = _LOOP_PACKAGES[option]
        try:
            modules[name] = importlib.import_module(name)  # only when asked for
        except ImportError as exc:
            coro.close()
            print(
                f"fullduplex: {option} needs {name} ({exc}): pip install 'fullduplex[{extra}]'",
                file=sys.stderr,
            )
            return 2

    def loop_factory() -> asyncio.AbstractEventLoop:
        uvloop = modules.get("uvloop")
        loop: asyncio.AbstractEventLoop = (
            uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        )
        if "aiofastnet" in modules:
            # Its create_server / create_connection give aiofastnet's compiled transports.
            modules["aiofastnet"].patch_loop(loop)
        return loop

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coro)
    return 0


def _serve_here(args: argparse.Namespace, port: int, channel: WorkerChannel | None) -> int:
    """Run the command's server in this process; in a worker when ``channel`` is given."""
    factory = _server_factory(args)
    if isinstance(factory, str):
        print(f"fullduplex {args.command}: {factory}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {"ssl": _tls_context(args)}
    if channel is not None and channel.socket is not None:
        options["sock"] = channel.socket  # the supervisor's: it outlives this worker
    elif channel is not None:
        options["reuse_port"] = True  # the workers share the port

    def on_listening(server: Server) -> None:
        if channel is None:
            _announce(args, server.port)
        else:
            channel.ready()
            channel.stop_with_parent(asyncio.get_running_loop().add_reader)

    def make() -> Server:
        return factory(args.host, port, **options)

    try:
        serving = _serve_until_signal(
            make, on_listening, getattr(args, "drain", 0.0), getattr(args, "drain_code", 1001)
        )
        return _run(serving, args.uvloop, args.aiofastnet)
    except OSError as exc:  # e.g. the port is taken
        print(f"fullduplex {args.command}: cannot listen: {exc}", file=sys.stderr)
        return 1
    finally:
        if channel is None and getattr(args, "pidfile", None):
            remove_pidfile(args.pidfile)


def _worker(args: argparse.Namespace, port: int, channel: WorkerChannel) -> int:
    """The target of each worker process (a fresh interpreter: logging is set up again)."""
    _configure_logging(args)
    return _serve_here(args, port, channel)


def _supervise(args: argparse.Namespace) -> int:
    """Run the server in ``--workers`` processes, or in one that ``--reload`` restarts."""
    prog = f"fullduplex {args.command}"
    if args.workers > 1 and args.command != "echo" and not getattr(args, "broker", None):
        print(
            f"{prog}: note: without --broker each of the {args.workers} workers has its own "
            "groups (a broadcast reaches the sessions of one worker)",
            file=sys.stderr,
        )
    watch = None
    if getattr(args, "reload", False):
        if args.workers > 1:
            print(f"{prog}: --reload runs one worker; drop --workers", file=sys.stderr)
            return 2
        try:
            watch = _app_directory(args.app)
        except ImportError as exc:
            print(f"{prog}: cannot load {args.app}: {exc}", file=sys.stderr)
            return 2
    try:
        with listening_sockets(args.host, args.port, args.workers) as sockets:
            port = int(sockets[0].getsockname()[1])
            supervisor = Supervisor(
                _worker,
                (args, port),
                workers=args.workers,
                max_restarts=args.max_restarts,
                shutdown_timeout=args.shutdown_timeout,
                watch=watch,
                on_ready=lambda: _announce(args, port),
                sockets=sockets,
            )
            return supervisor.run()
    except ImportError as exc:  # --reload without watchfiles
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port cannot be reserved
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        if getattr(args, "pidfile", None):
            remove_pidfile(args.pidfile)


def _server_command(args: argparse.Namespace) -> int:
    try:
        _tls_context(args)  # fail now, not in every worker
    except (OSError, ssl.SSLError) as exc:
        print(f"fullduplex {args.command}: cannot load the certificate: {exc}", file=sys.stderr)
        return 2
    pidfile = getattr(args, "pidfile", None)
    if pidfile and not Path(pidfile).resolve().parent.is_dir():
        # Found now, not once listening (where it would stop a server that serves).
        print(f"fullduplex {args.command}: no directory for --pidfile {pidfile}", file=sys.stderr)
        return 2
    if getattr(args, "workers", 1) > 1 or getattr(args, "reload", False):
        return _supervise(args)
    return _serve_here(args, args.port, None)


# ---- the parser ------------------------------------------------------------------------------


def _positive(value: str) -> int:
    """Parse a count of at least 1 for argparse."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def _non_negative(value: str) -> float:
    """Parse a duration in seconds, 0 or more, for argparse."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be 0 or more")
    return seconds


def _add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=_LOG_LEVELS,
        metavar="LEVEL",
        help="log messages from LEVEL up to standard error: " + ", ".join(_LOG_LEVELS) + " "
        "(default warning, or as -v says)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )


def _add_server_arguments(
    parser: argparse.ArgumentParser,
    port: int,
    *,
    compression: bool = True,
    workers: bool = False,
    reload: bool = False,
    broker: bool = False,
) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=int, default=port, help=f"TCP port, 0 for any free one (default {port})"
    )
    parser.add_argument(
        "--certfile",
        metavar="PEM",
        help="serve TLS (wss://, https://) with this certificate chain (PEM)",
    )
    parser.add_argument(
        "--keyfile",
        metavar="PEM",
        help="the certificate's private key (default: in --certfile)",
    )
    if compression:
        parser.add_argument(
            "--no-compression", action="store_true", help="refuse permessage-deflate"
        )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument(
        "--pidfile",
        metavar="FILE",
        help="once listening, write the process id (the supervisor's with --workers) to FILE, "
        "for 'fullduplex drain --pidfile FILE'; removed on exit",
    )
    parser.add_argument(
        "--aiofastnet",
        action="store_true",
        help="use aiofastnet's compiled transports (the fast extra): faster round trips, "
        "about 4.6 KiB more per connection",
    )
    if broker:
        parser.add_argument(
            "--broker",
            metavar="URL",
            default=os.environ.get("FULLDUPLEX_BROKER") or None,
            help="carry the app's groups between processes and machines through this broker: "
            "redis://HOST:PORT/DB (needs 'fullduplex[redis]') or memory:// (one process; the "
            "default, unless FULLDUPLEX_BROKER names one)",
        )
    if broker:  # the commands that serve an App
        parser.add_argument(
            "--health",
            action="store_true",
            help="serve /livez and /readyz (503 while the broker cannot carry messages)",
        )
        parser.add_argument(
            "--metrics",
            action="store_true",
            help="serve the app's metrics at /metrics (Prometheus text format)",
        )
        parser.add_argument(
            "--max-connections",
            type=_positive,
            metavar="N",
            help="refuse more than N open connections per process, before the upgrade (503)",
        )
        parser.add_argument(
            "--max-per-ip",
            type=_positive,
            metavar="N",
            help="refuse more than N open connections per client address (429)",
        )
        parser.add_argument(
            "--drain",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="on SIGTERM/SIGINT: stop listening (other workers on the port keep "
            "accepting, /readyz turns 503), then close the connections gradually over this "
            "many seconds so that clients reconnect spread out (default 5; 0: all at once)",
        )
        parser.add_argument(
            "--drain-code",
            type=int,
            default=1001,
            metavar="CODE",
            help="the close code of a drain: 1001 (default), 1012 (service restart), or "
            "4000-4999 of your own",
        )
        parser.add_argument(
            "--accept-rate",
            type=float,
            metavar="R",
            help="admit at most R new connections per second per process, bursts of R (429)",
        )
    if workers:
        parser.add_argument(
            "--workers",
            type=_positive,
            default=1,
            metavar="N",
            help="run N processes that share the port (SO_REUSEPORT) under a supervisor that "
            "restarts those that die; each has its own connections and sessions, and groups "
            "span them only through --broker (default 1: no supervisor)",
        )
        parser.add_argument(
            "--max-restarts",
            type=int,
            default=10,
            metavar="N",
            help="with --workers: give up (exit 1) after more than N restarts in a minute "
            "(default 10)",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="with --workers or --reload: how long workers have to close their "
            "connections (1001) after SIGINT/SIGTERM before they are killed (default 10)",
        )
    if reload:
        parser.add_argument(
            "--reload",
            action="store_true",
            help="development: restart the server when a .py file under the app's top-level "
            "package (or the directory of its module) changes; needs watchfiles "
            "(pip install 'fullduplex[reload]')",
        )
    _add_logging_arguments(parser)
    parser.set_defaults(func=_server_command)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``fullduplex`` command."""
    parser = argparse.ArgumentParser(
        prog="fullduplex",
        description="fullduplex: WebSocket servers and tools. "
        "'fullduplex COMMAND --help' describes each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fullduplex {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    echo = commands.add_parser(
        "echo",
        help="run an echo server (every path)",
        description="Echo every text and binary message back, on every path. The first line "
        "of standard output is 'fullduplex echo server listening on ws://HOST:PORT' "
        "(wss:// with --certfile).",
    )
    _add_server_arguments(echo, 9001, workers=True)
    echo.add_argument(
        "--max-message-size",
        type=byte_count,
        default=_ECHO_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message accepted, 'none' for no limit (default 64 MiB here, for the "
        "conformance suites; the library's serve() defaults to 1 MiB)",
    )
    demo = commands.add_parser(
        "demo",
        help="serve the sample apps (echo, chat, snake) and their pages",
        description="Serve examples/demo.py: the echo, chat and snake samples and their pages "
        "on one port. The first line of standard output is "
        "'fullduplex demo on http://HOST:PORT/' (https:// with --certfile).",
    )
    _add_server_arguments(demo, 8000, compression=False, workers=True, broker=True)
    add_connect_parser(commands)
    serve_app = commands.add_parser(
        "serve",
        help="serve a fullduplex.app App: fullduplex serve module:app",
        description="Import MODULE:ATTRIBUTE (a fullduplex.app.App; ATTRIBUTE defaults to "
        "'app') and serve it until SIGINT or SIGTERM, which close every session with 1001. "
        "The first line of standard output is 'fullduplex app listening on http://HOST:PORT "
        "and ws://HOST:PORT' (https:// and wss:// with --certfile).",
    )
    serve_app.add_argument("app", metavar="MODULE:ATTRIBUTE", help="e.g. examples.demo:app")
    serve_app.add_argument(
        "--asgi",
        action="store_true",
        help="MODULE:ATTRIBUTE is an ASGI 3 application (Starlette, FastAPI...): run its "
        "WebSocket scopes on fullduplex and its HTTP requests too (read whole, buffered)",
    )
    serve_app.add_argument(
        "--drain-timeout",
        type=_non_negative,
        default=None,
        metavar="SECONDS",
        help="with --asgi: at shutdown, seconds an application may take to return once its "
        "WebSocket closed (it got its websocket.disconnect); then it is cancelled, so an "
        "application that ignores the disconnect cannot hang a SIGTERM (default 30)",
    )
    _add_server_arguments(serve_app, 8000, workers=True, reload=True, broker=True)
    add_drain_parser(commands)
    _add_proxy_config_parser(commands)
    return parser


def _add_proxy_config_parser(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy-config",
        help="print an nginx or Apache configuration that proxies to fullduplex",
        description="Print a complete nginx.conf (nginx -c FILE) or Apache httpd 2.4.47+ "
        "configuration (apache2 -f FILE) for WebSockets to fullduplex: the Upgrade headers, "
        "timeouts above the ping interval, no response buffering, a bounded reload.",
    )
    proxy.add_argument("server", choices=("nginx", "apache"))
    proxy.add_argument(
        "--upstream",
        action="append",
        metavar="HOST:PORT",
        help="a fullduplex server; repeat to balance between several (default 127.0.0.1:8000)",
    )
    proxy.add_argument(
        "--path", default="/", help="URL prefix proxied, stripped before the app (e.g. /rt/)"
    )
    proxy.add_argument("--listen", default="80", help="port (or ADDRESS:PORT) the proxy listens on")
    proxy.add_argument("--server-name", default="localhost")
    proxy.add_argument(
        "--read-timeout",
        type=int,
        default=proxy_config.DEFAULT_READ_TIMEOUT,
        metavar="SECONDS",
        help="silence after which the proxy cuts a connection; keep it above the server's ping "
        "interval (default %(default)s)",
    )
    proxy.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help="put the pid file, logs and temporary files there (default: the proxy's own)",
    )
    proxy.add_argument(
        "--modules-dir",
        default="/usr/lib/apache2/modules",
        metavar="DIR",
        help="where Apache's modules are (default %(default)s)",
    )
    proxy.set_defaults(func=_proxy_config_command)


def _proxy_config_command(args: argparse.Namespace) -> int:
    try:
        options = proxy_config.ProxyOptions(
            upstreams=tuple(args.upstream or ("127.0.0.1:8000",)),
            path=args.path,
            listen=args.listen,
            server_name=args.server_name,
            read_timeout=args.read_timeout,
            runtime_dir=args.runtime_dir,
            modules_dir=args.modules_dir,
        )
    except ValueError as error:
        print(f"fullduplex proxy-config: {error}", file=sys.stderr)
        return 2
    render = proxy_config.nginx if args.server == "nginx" else proxy_config.apache
    sys.stdout.write(render(options))
    return 0


def _configure_logging(args: argparse.Namespace) -> None:
    chosen: str | None = getattr(args, "log_level", None)  # connect has only -v
    if chosen is not None:
        level = getattr(logging, chosen.upper())
    else:
        verbose = getattr(args, "verbose", 0)  # proxy-config has neither
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format=_LOG_FORMAT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fullduplex`` command.

    Args:
        argv: The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args)
    func: Callable[[argparse.Namespace], int] = args.func
    with contextlib.suppress(KeyboardInterrupt):
        return func(args)
    return 130
