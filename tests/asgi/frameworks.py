"""Unmodified Starlette and FastAPI applications, as ``fullduplex serve --asgi`` runs them."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import WebSocketRoute

__all__ = ["fastapi_app", "late_app", "starlette_app", "stubborn_app"]


class Echo(WebSocketEndpoint):
    """Starlette's class endpoint: text encoding, echo with a prefix."""

    encoding = "text"

    async def on_receive(self, websocket: Any, data: str) -> None:
        """Echo."""
        await websocket.send_text(f"starlette: {data}")


starlette_app = Starlette(routes=[WebSocketRoute("/echo", Echo)])

fastapi_app = FastAPI()


@fastapi_app.get("/items/{item}")
async def item(item: int) -> dict[str, int]:
    """An HTTP route beside the WebSocket one."""
    return {"item": item}


@fastapi_app.post("/items")
async def create_item(payload: dict[str, Any]) -> dict[str, Any]:
    """A POST route with a JSON body, as most FastAPI apps have."""
    return {"created": payload}


@fastapi_app.websocket("/ws/{name}")
async def ws_route(websocket: WebSocket, name: str) -> None:
    """JSON echo with the path parameter; closes with 4000 on "bye"."""
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            if data == "bye":
                await websocket.close(4000, "bye")
                return
            await websocket.send_json({"name": name, "data": data})
    except WebSocketDisconnect:
        pass


async def stubborn_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app that accepts, writes its disconnect event to the file named by
    $STUBBORN_LOG, then never returns: only a bounded drain ends a shutdown with it."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    event = await receive()
    with open(os.environ["STUBBORN_LOG"], "a") as log:
        log.write(f"{event['type']} {event.get('code')}\n")
    await asyncio.Event().wait()


async def late_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app that takes a second to accept, then writes the event it receives next
    to the file named by $STUBBORN_LOG and returns."""
    if scope["type"] != "websocket":
        return
    await receive()
    await asyncio.sleep(1)
    await send({"type": "websocket.accept"})
    event = await receive()
    with open(os.environ["STUBBORN_LOG"], "a") as log:
        log.write(f"{event['type']} {event.get('code')}\n")
