"""The App of the ASGI endpoint suite, as the ASGI servers import it.

``asgi_app`` is the App as an ASGI application; ``starlette_app`` and ``fastapi_app`` mount
it at ``/ws`` inside Starlette and FastAPI. Run e.g. ``uvicorn tests.asgi.apps:asgi_app``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from fullduplex.app import (
    App,
    BytesCodec,
    CloseReason,
    Endpoint,
    JSONCodec,
    Request,
    Response,
    Session,
    TextCodec,
)
from fullduplex.asgi import ASGIWebSocket

__all__ = ["app", "asgi_app", "fastapi_app", "starlette_app"]

app = App()

#: Every close reported to the sessions of /watch: "closed <path> <code> <reason>".
WATCH = "watch"


@app.on_message("/echo")
async def echo(session: Session, message: str | bytes) -> str | bytes:
    """Send every message back."""
    return message


@app.endpoint("/json", codec=JSONCodec())
class JSONEcho(Endpoint):
    """Sends back what it decoded, wrapped: proves both directions of the codec."""

    def on_message(self, session: Session, message: Any) -> Any:
        """Wrap the decoded value."""
        return {"got": message}


@app.on_message("/text", codec=TextCodec())
def text(session: Session, message: str) -> str:
    """Text only (a binary message closes with 1003)."""
    return message.upper()


@app.on_message("/bytes", codec=BytesCodec())
def binary(session: Session, message: bytes) -> bytes:
    """Binary only (a text message closes with 1003)."""
    return message[::-1]


@app.endpoint("/life/{name}")
class Life(Endpoint):
    """Greets on open, closes on request with the code and reason asked, and reports every
    close to the /watch sessions through a group broadcast."""

    def on_open(self, session: Session) -> str | None:
        """Greet with the path parameter, the query and the path as routed."""
        self.name = session.path_params["name"]
        return None

    async def on_message(self, session: Session, message: str | bytes) -> str | None:
        """``hello``: greet; ``close CODE REASON``: close so; ``boom``: raise."""
        assert isinstance(message, str)
        if message == "hello":
            query = session.query.get("q", [""])[0]
            return f"hello {self.name} q={query} path={session.path}"
        if message.startswith("close "):
            _, code, reason = message.split(" ", 2)
            await session.close(int(code), reason)
            return None
        if message == "boom":
            raise RuntimeError("boom")
        return message

    async def on_error(self, session: Session, error: Exception) -> None:
        """Tell the client which error reached the hook before the framework closes."""
        await session.send(f"on_error {type(error).__name__}")

    def on_close(self, session: Session, reason: CloseReason) -> None:
        """Report the close to the watchers."""
        app.group(WATCH).broadcast_nowait(
            f"closed {session.path} {reason.code} {reason.reason}".rstrip()
        )


@app.endpoint("/watch")
class Watch(Endpoint):
    """Joins the watchers' group and says so."""

    def on_open(self, session: Session) -> None:
        """Join."""
        session.join(WATCH)

    def on_message(self, session: Session, message: str | bytes) -> str:
        """Answer a ping, so the client knows it has joined."""
        return "joined"


@app.on_message("/proto", subprotocols=("chat.v2", "chat.v1"))
def proto(session: Session, message: str | bytes) -> str:
    """Report the subprotocol negotiated."""
    return f"subprotocol={session.subprotocol}"


@app.on_message("/small", max_message_size=16)
def small(session: Session, message: str | bytes) -> str | bytes:
    """Echo; a message over 16 bytes closes with 1009."""
    return message


@app.on_message("/private")
def private(session: Session, message: str | bytes) -> str:  # pragma: no cover - denied
    """Never reached: process_request denies it."""
    return "unreachable"


app.metrics_route()  # /metrics, read through ASGI (tests/asgi/test_application.py)


@app.get("/health")
def health(request: Request) -> dict[str, str]:
    """A plain GET route beside the endpoints."""
    return {"status": "ok"}


def deny_private(ws: ASGIWebSocket, request: Request) -> Response | None:
    """Deny /private with 403 and a body, as an authentication hook would."""
    if request.path.partition("?")[0].endswith("/private"):
        return ws.respond(403, "no entry\n")
    return None


asgi_app = app.asgi(process_request=deny_private)


async def _home(request: Any) -> PlainTextResponse:
    return PlainTextResponse("starlette home")


starlette_app = Starlette(routes=[Route("/", _home), Mount("/ws", app=asgi_app)])

fastapi_app = FastAPI()
fastapi_app.mount("/ws", asgi_app)


@fastapi_app.get("/", response_class=PlainTextResponse)
async def _fastapi_home() -> str:
    return "fastapi home"
