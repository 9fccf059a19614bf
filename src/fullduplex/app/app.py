"""The App: endpoints, plain HTTP routes and groups, served by the asyncio server.

::

    app = App()

    @app.endpoint("/chat/{room}", codec=JSONCodec(ChatMessage), max_message_size=64 * 1024)
    class Chat(Endpoint):
        async def on_open(self, session):
            session.join(session.path_params["room"])

        async def on_message(self, session, message):
            await session.group(session.path_params["room"]).broadcast(message)

    @app.on_message("/echo")
    async def echo(session, message):
        return message

    app.static("/", "examples/chat/static")
    app.run("127.0.0.1", 8000)

Routing happens in the server's ``process_request`` hook, before any upgrade: a WebSocket
request for an unknown path gets 404, and the endpoint's limits (max message size,
compression, subprotocols) apply to the connection from its first frame. Then each session
runs from the connection's callbacks, without a task while idle: ``on_open``, ``on_message``
for each message in order, ``on_close`` (see :mod:`fullduplex.app.inline`); sessions of
adapters (ASGI) run in one task each. No task or future per message.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..asyncio.connection import DEFAULT_CLOSE_TIMEOUT
from ..asyncio.server import Server, serve
from ..brokers import Broker, Gap, GroupOptions, Presence, broker_from_url
from ..exceptions import ConnectionClosed, ProtocolError, TooManyGroups, close_code_for
from ..fallback import FallbackOptions, FallbackService, FallbackSocket, Target, split_path
from .codecs import Codec, DecodeError, PassthroughCodec
from .endpoint import Endpoint, EndpointConfig, FunctionEndpoint, MessageHandler
from .groups import Group, GroupRegistry
from .http import HTTP, RouteHandler, response
from .inline import (
    CONTINUE,
    Conversation,
    closed_by,
    count_latency,
    handle_message,
    invoke,
    message_handler,
)
from .limits import Admission, Limits
from .metrics import Metrics, escape_label
from .routing import Route, Router
from .session import Session

if TYPE_CHECKING:
    from ..asgi.application import ASGIApp
    from ..asyncio.connection import LoggerLike, WebSocket
    from ..asyncio.server import ServerWebSocket
    from ..fallback.service import Responder
    from ..protocol.handshake import Request, Response

__all__ = ["BROKER_ENV", "App"]

BROKER_ENV = "FULLDUPLEX_BROKER"
"""The environment variable naming the broker of Apps created without one."""

E = TypeVar("E", bound=type[Endpoint])
H = TypeVar("H", bound=MessageHandler)

_logger = logging.getLogger("fullduplex.app")

# The reasons sent with the close codes the framework chooses: fixed phrases, because
# exception text stays in the local log.
_REASONS = {1003: "unsupported data", 1007: "invalid data", 1011: "internal error"}
# Health answers must not be cached by a proxy between the prober and the server.
_NO_STORE = (("Cache-Control", "no-store"),)


@functools.lru_cache(maxsize=256)
def _endpoint_key(template: str) -> Hashable:
    # Cached: one tuple per endpoint, not one per session (the session holds it till its end).
    return ("endpoint", template)


def _broker_from_env() -> Broker:
    """The broker ``FULLDUPLEX_BROKER`` names (a MemoryBroker when it is unset or empty)."""
    url = os.environ.get(BROKER_ENV)
    try:
        return broker_from_url(url)
    except ValueError as error:
        # The URL may come from a shell profile or a unit file: say where it was read.
        raise ValueError(f"{BROKER_ENV}: {error}") from None


class App:
    """A WebSocket application: endpoints at path templates, plus plain HTTP on the same port.

    Args:
        broker: Carries groups between processes (:mod:`fullduplex.brokers`). Default: the
            one the ``FULLDUPLEX_BROKER`` environment variable names (e.g.
            ``redis://127.0.0.1:6379/0``), else a :class:`~fullduplex.brokers.MemoryBroker`
            (one process).
        on_gap: Called with a :class:`~fullduplex.brokers.Gap` when the broker finds that
            messages of a group did not reach this process and could not be recovered
            (they are also logged and counted). E.g. tell the group's members to reload.
        logger: Where the framework logs session errors (default ``fullduplex.app``).
        limits: What to admit before the upgrade (connections in all, per client address,
            per user, per second): see :class:`~fullduplex.app.limits.Limits`.
        client_script: Serve the browser client at ``/fullduplex.js``,
            ``/fullduplex.global.js`` and their versioned names (:mod:`fullduplex.app.script`)
            where no GET route or static file of the app does; False serves none of them.
        fallback: The settings of the fallback transports (HTTP streaming and long-polling
            at ``<endpoint path>/_fd/...``, :mod:`fullduplex.fallback`) for browsers that
            cannot use WebSocket; None: the defaults; False: no fallback.

    Raises:
        ValueError: ``broker`` is not given and ``FULLDUPLEX_BROKER`` names no broker, or an
            invalid URL (the message starts with the variable's name).
    """

    def __init__(
        self,
        *,
        broker: Broker | None = None,
        on_gap: Callable[[Gap], object] | None = None,
        logger: LoggerLike | None = None,
        limits: Limits | None = None,
        client_script: bool = True,
        fallback: FallbackOptions | bool | None = None,
    ) -> None:
        self._endpoints: Router[EndpointConfig] = Router()
        self._http = HTTP()
        self._http.client_script = client_script
        self._group_options: list[tuple[str, GroupOptions]] = []
        self._registry = GroupRegistry()
        self._on_gap = on_gap
        self._admission = Admission(limits) if limits is not None else None
        self._serving = False
        self._server: Server | None = None
        # Sessions on the server's callbacks, which the server does not wait for as it waits
        # for tasks: shutdown() waits for them (after close(close_connections=False)).
        self._native_sessions = 0
        self._native_ended: asyncio.Event | None = None
        self._registry.metrics.add_gauges(self._gauges)
        self._registry.metrics.add_counters(self._server_refusals)
        self._send_queue_gauge = False
        self._logger: LoggerLike = logger if logger is not None else _logger
        self.use_broker(broker if broker is not None else _broker_from_env())
        self._fallback: FallbackService | None = None
        if fallback is not False:
            self._fallback = FallbackService(
                fallback if isinstance(fallback, FallbackOptions) else FallbackOptions(),
                owner=self.broker.node_id,
                resolve=self._fallback_target,
                spawn=self._spawn,
                admit=self._admit_fallback,
            )

    # ---- the broker ----------------------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """The broker that carries this app's groups."""
        return self._registry.broker

    def use_broker(self, broker: Broker) -> None:
        """Carry this app's groups with ``broker`` from now on (before serving).

        Raises:
            RuntimeError: Sessions have joined groups already.
        """
        if self._registry.group_keys():
            raise RuntimeError("use_broker() must be called before sessions join groups")
        for pattern, options in self._group_options:
            broker.policies.add(pattern, options)
        broker.attach(self._registry.dispatch, self._gap)
        self._registry.broker = broker

    def configure_groups(self, pattern: str, **options: Any) -> None:
        """Set the options of the groups whose names match ``pattern`` (``fnmatch``, e.g.
        ``"chat:*"``); the first pattern configured that matches a group decides.

        Args:
            pattern: The group name pattern.
            **options: Fields of :class:`~fullduplex.brokers.GroupOptions`: ``history_size``,
                ``history_ttl``, ``max_recovery``, ``presence``, ``presence_ttl``,
                ``meta_ttl``, ``stamp``.

        Raises:
            TypeError: An option is unknown.
            ValueError: An option's value is invalid.
        """
        group_options = GroupOptions(**options)
        self._group_options.append((pattern, group_options))
        self.broker.policies.add(pattern, group_options)

    async def presence(self, group: str) -> Presence:
        """Who is in ``group``, in every process: session ids and distinct user ids.

        Raises:
            ValueError: Presence is not enabled for the group (``configure_groups``).
            BrokerError: The broker did not answer.
        """
        return await self.broker.presence(group)

    def _gap(self, gap: Gap) -> None:
        if self._on_gap is not None:
            try:
                self._on_gap(gap)
            except Exception:
                self._logger.error("on_gap failed", exc_info=True)

    # ---- registering ---------------------------------------------------------------------------

    def endpoint(self, path: str, **config: Any) -> Callable[[E], E]:
        """Register an :class:`Endpoint` subclass at ``path``; use as a class decorator.

        Args:
            path: The path template, e.g. ``/chat/{room}``.
            **config: The other fields of :class:`EndpointConfig` (codec, max_message_size,
                idle_timeout, max_buffered, overflow, subprotocols, compression).

        Raises:
            TypeError: The class is not an Endpoint subclass, or a config field is unknown.
            ValueError: The template is invalid or already routed, or a config value is.
        """

        def register(cls: E) -> E:
            if not (isinstance(cls, type) and issubclass(cls, Endpoint)):
                raise TypeError(f"@app.endpoint needs an Endpoint subclass, got {cls!r}")
            self.add_endpoint(EndpointConfig(path, cls, **config))
            return cls

        return register

    def on_message(self, path: str, **config: Any) -> Callable[[H], H]:
        """Register a function endpoint at ``path``; use as a function decorator.

        The function is called as ``func(session, message)`` for each message (sync or async);
        a non-None return value is sent back to the session.

        Args:
            path: The path template.
            **config: The other fields of :class:`EndpointConfig`.

        Raises:
            TypeError: A config field is unknown.
            ValueError: The template is invalid or already routed, or a config value is.
        """

        def register(func: H) -> H:
            # Stateless: one instance serves every session.
            instance = FunctionEndpoint(func)
            self.add_endpoint(EndpointConfig(path, lambda: instance, **config))
            return func

        return register

    def add_endpoint(self, config: EndpointConfig) -> None:
        """Register an endpoint from its configuration (what the decorators do).

        Raises:
            ValueError: Its path template is invalid or already routed.
        """
        self._endpoints.add(config.path, config)

    def get(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        """Register a plain HTTP GET (and HEAD) route; use as a decorator.

        The function is called as ``func(request, **path_params)`` (sync or async) and returns
        a str (text/plain), bytes, a dict or list (JSON), or a
        :class:`~fullduplex.protocol.handshake.Response` (see :func:`fullduplex.app.response`).

        Raises:
            ValueError: The template is invalid or already routed.
        """
        return self._http.get(path)

    def static(self, prefix: str, directory: str | os.PathLike[str]) -> None:
        """Serve the files of ``directory`` under URL path ``prefix`` (GET and HEAD).

        Raises:
            ValueError: ``prefix`` does not start with "/", or ``directory`` is not one.
        """
        self._http.static(prefix, directory)

    @property
    def metrics(self) -> Metrics:
        """This app's counters (:class:`~fullduplex.app.metrics.Metrics`): read them with
        ``render()`` (Prometheus text) or ``snapshot()`` (a dict), or serve them with
        :meth:`metrics_route`."""
        return self._registry.metrics

    def metrics_route(self, path: str = "/metrics", *, send_queue: bool = False) -> None:
        """Serve this app's metrics at ``path`` in Prometheus' text format (0.0.4): sessions
        opened and closed (by endpoint, close code, who started the close), refused upgrades
        (by reason, the server's own refusals too), messages and their bytes, broadcasts,
        their bytes and fan-out time, ping round-trip times, slow-consumer actions,
        recoveries, open connections per endpoint, readiness, and the broker's counters.

        Args:
            path: Where.
            send_queue: Also the gauge ``fullduplex_send_queue_bytes{endpoint}``: bytes
                written to sessions that the network has not taken yet, summed at each
                scrape over every open session (so that scrape reads every session; the
                rest of a scrape costs the number of endpoints).

        Raises:
            ValueError: ``path`` is already routed.
        """
        self._send_queue_gauge = send_queue

        def scrape(request: Request) -> Response:
            body = self.metrics.render(self.broker)
            return response(
                200,
                body.encode(),
                content_type="text/plain; version=0.0.4; charset=utf-8",
                headers=_NO_STORE,
            )

        self._http.get(path)(scrape)

    def _gauges(self) -> list[tuple[str, str, str, float]]:
        samples: list[tuple[str, str, str, float]] = []
        for route in self._endpoints:
            template = route.target.path
            members = self._registry.members(_endpoint_key(template))
            samples.append(
                (
                    "fullduplex_connections",
                    "Open sessions, by endpoint.",
                    f'endpoint="{escape_label(template)}"',
                    len(members) if members else 0,
                )
            )
            if self._send_queue_gauge:
                queued = sum(s._ws.buffered_amount for s in members) if members else 0
                samples.append(
                    (
                        "fullduplex_send_queue_bytes",
                        "Bytes written to sessions that the network has not taken yet.",
                        f'endpoint="{escape_label(template)}"',
                        queued,
                    )
                )
        ready = 1 if self.not_ready() is None else 0
        samples.append(("fullduplex_ready", "1 when /readyz would answer 200.", "", ready))
        return samples

    def _server_refusals(self) -> list[tuple[str, str, str, float]]:
        server = self._server
        if server is None:
            return []
        return [
            (
                "fullduplex_handshakes_refused_total",
                "Handshakes the server refused before the app saw them, by reason.",
                f'reason="{reason}"',
                count,
            )
            for reason, count in sorted(server.refusals.items())
        ]

    def use_limits(self, limits: Limits | None) -> None:
        """Admit connections within ``limits`` from now on (None: no limits); the counts start
        from zero."""
        self._admission = Admission(limits) if limits is not None else None

    # ---- health --------------------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why this app should not get new connections now, or None when it is ready: it
        serves, and its broker can carry messages (for a Redis broker: connected, and its
        probe came back recently)."""
        if not self._serving:
            return "not serving"
        if self._server is not None and self._server.closing:
            return "draining"
        return self.broker.health()

    def health_routes(self, live: str = "/livez", ready: str = "/readyz") -> None:
        """Serve ``live`` (200 while the process answers) and ``ready`` (200 when
        :meth:`not_ready` is None, else 503 with the reason), for load balancers and
        orchestrators (e.g. Kubernetes liveness and readiness probes).

        Raises:
            ValueError: A path is already routed.
        """

        def livez(request: Request) -> Response:
            return response(200, "ok\n", headers=_NO_STORE)

        def readyz(request: Request) -> Response:
            reason = self.not_ready()
            if reason is None:
                return response(200, "ready\n", headers=_NO_STORE)
            return response(503, f"not ready: {reason}\n", headers=_NO_STORE)

        self._http.get(live)(livez)
        self._http.get(ready)(readyz)

    # ---- groups --------------------------------------------------------------------------------

    def sessions(self, path: str) -> Group:
        """Return the group of every open session of the endpoint registered at ``path``.

        Args:
            path: The endpoint's path template, exactly as registered (``/chat/{room}``).

        Raises:
            KeyError: No endpoint is registered at ``path``.
        """
        if path not in self._endpoints:
            raise KeyError(f"no endpoint is registered at {path!r}")
        return Group(self._registry, _endpoint_key(path), path)

    def group(self, name: str, codec: Codec | None = None) -> Group:
        """Return the group ``name`` (empty until a session joins it).

        Args:
            name: The group's name.
            codec: Encodes its broadcasts when the broker spans processes (None: str and
                bytes are sent as they are); with the in-process broker each member's
                endpoint codec encodes them.
        """
        return Group(self._registry, name, name, codec)

    # ---- serving -------------------------------------------------------------------------------

    def serve(self, host: str | None = "127.0.0.1", port: int = 8000, **options: Any) -> Server:
        """Create the server for this app; ``async with app.serve(...) as server`` runs it.

        Args:
            host: The interface to listen on.
            port: The TCP port; 0 picks a free one (read ``server.port``).
            **options: Options of :func:`fullduplex.serve`. A ``process_request`` given here
                runs first (e.g. authentication); when it returns None the app routes the
                request. A ``select_subprotocol`` given here replaces the endpoints'
                ``subprotocols``.

        Returns:
            The :class:`~fullduplex.asyncio.server.Server`, not yet listening: await it or
            use it as an async context manager. Closing it closes every session with 1001.
        """
        before = options.pop("process_request", None)

        # A plain function, so that an upgrade is answered without a task (the server runs
        # one only for what it returns awaitable: plain HTTP, an async hook given here).
        def process_request(
            ws: ServerWebSocket, request: Request
        ) -> Response | Awaitable[Response | None] | None:
            if before is not None:
                answer = before(ws, request)
                if inspect.isawaitable(answer):
                    return self._route_after(answer, ws, request)
                if answer is not None:
                    self.metrics.count(self.metrics.refused, "denied")
                    return answer  # type: ignore[no-any-return]
            return self._route(ws, request)

        options.setdefault("select_subprotocol", self._select_subprotocol)
        fallback = self._fallback
        if fallback is not None:
            # POST bodies of the fallback transports; every other request keeps having none
            # (refused before it is read).
            options.setdefault("max_body_size", fallback.options.max_post_size)
            options.setdefault("body_allowed", fallback.takes_body)
            fallback._closing = False
        server = self._server = serve(
            self._open_native,
            host,
            port,
            process_request=process_request,
            on_start=self.startup,
            on_closed=self.shutdown,
            on_closing=fallback.shutdown if fallback is not None else None,
            **options,
        )
        return server

    async def startup(self) -> None:
        """Start what the app needs before it serves (its broker); servers call it (the ASGI
        lifespan too). Until then, :meth:`not_ready` says "not serving"."""
        await self.broker.start()
        self._serving = True

    async def shutdown(self) -> None:
        """Stop what :meth:`startup` started; servers call it after the last session."""
        while self._native_sessions:
            ended = self._native_ended = asyncio.Event()
            await ended.wait()
        self._serving = False
        await self.broker.close()

    def _native_session_ended(self) -> None:
        """A session on the server's callbacks ended (what remains of it runs in tasks)."""
        self._native_sessions -= 1
        if not self._native_sessions and self._native_ended is not None:
            self._native_ended.set()

    async def serve_forever(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        on_listening: Callable[[Server], object] | None = None,
        drain: float = 0.0,
        drain_code: int = 1001,
        **options: Any,
    ) -> None:
        """Serve until SIGINT or SIGTERM (or until cancelled); then close every session with
        1001 and return; with ``drain``, close them with ``drain_code`` spread over that many
        seconds (:meth:`Server.drain <fullduplex.asyncio.server.Server.drain>`).

        Signal handlers are installed only when called from the main thread.

        Args:
            host: The interface to listen on.
            port: The TCP port (0: any free one).
            on_listening: Called with the server once it listens (e.g. to print its URL).
            **options: As for :meth:`serve`.
        """
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()

        def request_stop() -> None:
            if not stop.done():
                stop.set_result(None)

        installed: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, request_stop)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
                    continue
                installed.append(signum)
        try:
            async with self.serve(host, port, **options) as server:
                if on_listening is not None:
                    on_listening(server)
                await stop
                # A drain even when it is not spread: a handshake already under way opens and is
                # closed with the rest (a 503 or a reset there is a refused connection to a
                # client that a sibling on the same port would have served).
                await server.drain(drain, code=drain_code, timeout=drain + DEFAULT_CLOSE_TIMEOUT)
                # Leaving the block closes the server: 1001 to every session, tasks awaited.
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def run(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        on_listening: Callable[[Server], object] | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Any,
    ) -> None:
        """Run the app until Ctrl-C or SIGTERM, which close every session with 1001.

        Args:
            host: The interface to listen on.
            port: The TCP port (0: any free one).
            on_listening: Called with the server once it listens; by default one line with
                the app's URLs is printed to standard output.
            loop_factory: Creates the event loop, e.g. ``uvloop.new_event_loop``.
            **options: As for :meth:`serve`.
        """
        announce = on_listening if on_listening is not None else _print_urls
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self.serve_forever(host, port, on_listening=announce, **options))

    def asgi(self, **options: Any) -> ASGIApp:
        """Return this app as an ASGI 3 application, for uvicorn, hypercorn, granian, daphne,
        or to mount inside Starlette or FastAPI (see :class:`fullduplex.asgi.ASGIApp`).

        Args:
            **options: Options of :class:`~fullduplex.asgi.ASGIApp` (``process_request``).
        """
        # Imported on use: the ASGI adapter sits above the app package, which it imports.
        from ..asgi.application import ASGIApp  # noqa: PLC0415

        return ASGIApp(self, **options)

    # ---- routing -------------------------------------------------------------------------------

    async def _route_after(
        self, answer: Awaitable[Response | None], ws: ServerWebSocket, request: Request
    ) -> Response | None:
        """process_request after an async hook given to :meth:`serve`."""
        response = await answer
        if response is not None:
            self.metrics.count(self.metrics.refused, "denied")
            return response
        routed = self._route(ws, request)
        if inspect.isawaitable(routed):
            routed = await routed
        return routed

    def _route(
        self, ws: ServerWebSocket, request: Request
    ) -> Response | Awaitable[Response | None] | None:
        """process_request: pick the endpoint before the upgrade (at once), or answer plain
        HTTP (an awaitable)."""
        path = request.path.partition("?")[0]
        if self._fallback is not None and not request.is_upgrade:
            # Before the endpoints: a template with parameters could match a fallback path.
            fallback = split_path(path)
            if fallback is not None:
                return self._fallback.respond(ws, request, *fallback)
        found = self._endpoints.match(path)
        if not request.is_upgrade:
            return self._http.respond(ws, request, path, endpoint=found is not None)
        if found is None:
            self.metrics.count(self.metrics.refused, "not_found")
            return ws.respond(404, "Not Found\n")
        config = found[0].target
        if self._admission is not None:
            refused = self._admission.admit(ws, request)
            if refused is not None:
                self.metrics.count(self.metrics.refused, self._admission.last_refusal)
                return refused
        ws.max_message_size = config.max_message_size
        if config.compression is None:
            # The client's offer is withdrawn, so the handshake answers as if it never made
            # one: this endpoint's connections stay uncompressed whatever the server allows.
            request.headers.pop("Sec-WebSocket-Extensions", None)
        return None

    def _fallback_target(self, path: str) -> Target | None:
        """The endpoint at ``path`` as the fallback transports open sessions of it."""
        found = self._endpoints.match(path)
        if found is None:
            return None
        config = found[0].target

        def run(socket: FallbackSocket, query: str) -> Coroutine[Any, Any, None]:
            # The socket offers what Session and the App use of a WebSocket.
            return self._run_matched(cast("WebSocket", socket), path, query, found)

        return Target(config.max_message_size, config.max_buffered, run)

    def _admit_fallback(self, ws: Responder, request: Request) -> Response | Callable[[], None]:
        """A fallback session is admitted as an upgrade is: by the app's limits, then by the
        server's max_connections; both count it until it ends."""
        release_limits: Callable[[], None] | None = None
        if self._admission is not None:
            admitted = self._admission.acquire(cast("WebSocket", ws), request)
            if not callable(admitted):
                self.metrics.count(self.metrics.refused, self._admission.last_refusal)
                return admitted
            release_limits = admitted
        assert self._server is not None
        release_server = self._server.open_session()
        if release_server is None:
            if release_limits is not None:
                release_limits()
            self.metrics.count(self.metrics.refused, "capacity")
            return ws.respond(503, "too many connections\n", [("Retry-After", "5")])
        if release_limits is None:
            return release_server

        def release() -> None:
            release_server()
            release_limits()

        return release

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> object:
        """Run a fallback session's coroutine where closing the server waits for it."""
        # Fallback requests reach the App only through the server it serves on.
        assert self._server is not None
        return self._server.create_task(coro)

    def _select_subprotocol(self, request: Request, offered: Sequence[str]) -> str | None:
        found = self._endpoints.match(request.path.partition("?")[0])
        if found is None:
            return None
        for subprotocol in found[0].target.subprotocols:
            if subprotocol in offered:
                return subprotocol
        return None

    # ---- running a session ---------------------------------------------------------------------

    def _matched(
        self, ws: WebSocket
    ) -> tuple[str, str, tuple[Route[EndpointConfig], dict[str, str]]] | None:
        """The path, query and endpoint of the connection's request (None: no endpoint,
        which process_request answered with 404 already)."""
        request = ws.request
        assert request is not None
        path, _, query = request.path.partition("?")
        found = self._endpoints.match(path)
        return None if found is None else (path, query, found)

    def _open_native(self, ws: WebSocket) -> Awaitable[None] | None:
        """The server's handler: start one session on the connection's callbacks."""
        matched = self._matched(ws)
        if matched is None:  # pragma: no cover - process_request answered 404
            return ws.close(1011, _REASONS[1011])
        path, query, found = matched
        created = self._new_session(ws, path, query, found)
        if created is None:
            return ws.close(1011, _REASONS[1011])
        endpoint, session = created
        native = cast("ServerWebSocket", ws)
        Conversation(self, native, endpoint, session, _endpoint_key(session._config.path)).open()
        return None

    def _new_session(
        self,
        ws: WebSocket,
        path: str,
        query: str,
        found: tuple[Route[EndpointConfig], dict[str, str]],
    ) -> tuple[Endpoint, Session] | None:
        """The endpoint instance and the session, or None when the factory failed (logged)."""
        route, params = found
        config = route.target
        try:
            endpoint = config.factory()
        except Exception:
            self._logger.error(
                "[%s] creating the endpoint for %s failed", ws.id, path, exc_info=True
            )
            return None
        session = Session(
            ws, config, self._registry, path=path, path_params=params, query_string=query
        )
        return endpoint, session

    async def _run_session(self, ws: WebSocket) -> None:
        """One session from on_open to on_close in the caller's task (the generic path)."""
        matched = self._matched(ws)
        if matched is None:  # pragma: no cover - process_request answered 404
            await ws.close(1011, _REASONS[1011])
            return
        await self._run_matched(ws, *matched)

    async def _run_matched(
        self,
        ws: WebSocket,
        path: str,
        query: str,
        found: tuple[Route[EndpointConfig], dict[str, str]],
    ) -> None:
        """One session of the endpoint ``found`` for ``path``, from on_open to on_close.

        Separate from :meth:`_run_session` because an ASGI server routes on the path below
        the application's ``root_path``, not on the request's full path.
        """
        created = self._new_session(ws, path, query, found)
        if created is None:
            await ws.close(1011, _REASONS[1011])
            return
        endpoint, session = created
        config = session._config
        key = _endpoint_key(config.path)
        session._opened(key)
        metrics = self.metrics
        metrics.count(metrics.opened, config.path)
        closed: ConnectionClosed | None = None
        try:
            closed = await self._converse(endpoint, session, config)
        finally:
            session._ended(key)
            reason = session._close_reason(closed)
            metrics.count_close(reason.code, closed_by(closed, session))
            count_latency(metrics, ws)
            try:
                await invoke(endpoint.on_close, session, reason)
            except Exception as exc:
                self._logger.error("[%s] on_close failed", session.id, exc_info=True)
                await self._report(endpoint, session, exc)

    async def _converse(
        self, endpoint: Endpoint, session: Session, config: EndpointConfig
    ) -> ConnectionClosed | None:
        """on_open, then on_message for each message. Returns how the connection closed, or
        None when this side closed it after an error."""
        try:
            await invoke(endpoint.on_open, session)
        except ConnectionClosed as exc:
            if session.closed:
                return exc
            await self._error(endpoint, session, exc, "on_open")
            return None
        except Exception as exc:
            await self._error(endpoint, session, exc, "on_open")
            return None
        recv = session._ws.recv
        codec = config.codec
        decode = None if type(codec) is PassthroughCodec else codec.decode
        on_message = message_handler(endpoint)
        while True:
            try:
                message = await recv()
            except ConnectionClosed as exc:
                return exc
            outcome = await handle_message(
                self, endpoint, session, message, on_message=on_message, decode=decode
            )
            if outcome is not CONTINUE:
                return outcome  # type: ignore[return-value]

    async def _error(
        self, endpoint: Endpoint, session: Session, error: Exception, where: str
    ) -> None:
        """Log once, tell on_error, close the session with the error's code."""
        code = close_code_for(error)
        if isinstance(error, (ProtocolError, TooManyGroups)):
            # The peer's fault (an undecodable message, a group too many): one line, no
            # traceback.
            what = "undecodable message" if isinstance(error, DecodeError) else where
            self._logger.info("[%s] %s: %s; closing with %d", session.id, what, error, code)
        else:
            self._logger.error(
                "[%s] %s failed; closing with %d", session.id, where, code, exc_info=error
            )
        await self._report(endpoint, session, error)
        await session.close(code, _REASONS.get(code, ""))

    async def _report(self, endpoint: Endpoint, session: Session, error: Exception) -> None:
        """Call on_error; an exception there is logged and goes no further."""
        try:
            await invoke(endpoint.on_error, session, error)
        except Exception:
            self._logger.error("[%s] on_error failed", session.id, exc_info=True)


def _print_urls(server: Server) -> None:
    """Print one line with the server's HTTP and WebSocket URLs (flushed at once)."""
    name = server.sockets[0].getsockname()
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    where = f"{host}:{name[1]}"
    print(f"fullduplex app listening on http://{where} and ws://{where}", flush=True)
    # Interactive use: say how to stop.
    if sys.stdout.isatty():  # pragma: no cover - tests are not on a terminal
        print("Press Ctrl+C to stop.", flush=True)
