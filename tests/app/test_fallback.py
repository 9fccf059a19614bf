"""The fallback transports (fullduplex.fallback) served by an App, over real HTTP on 127.0.0.1:
open, stream, poll and send, their limits and errors, and endpoints that cannot tell them from
WebSocket."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from fullduplex.app import App, CloseReason, JSONCodec, Limits, Session
from fullduplex.asyncio.client import connect
from fullduplex.exceptions import InvalidStatus
from fullduplex.fallback import FallbackOptions, SessionIds
from tests.app.fallback_client import FallbackClient
from tests.app.utils import Recorder, serving, url
from tests.asyncio.utils import wait_for


def echo_app(**options: Any) -> App:
    """An App echoing at /echo; "close-me" closes with 4001 "bye"."""
    app = App(**options)

    @app.on_message("/echo")
    async def echo(session: Session, message: Any) -> Any:
        if message == "close-me":
            await session.close(4001, "bye")
            return None
        return message

    return app


class TestOpenAndEcho:
    async def test_stream_echo_both_ways_in_order(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            answer = await client.open()
            assert answer["h"] == 25000 and answer["t"] == 10000
            stream = await client.stream()
            assert stream.headers["x-accel-buffering"] == "no"
            assert stream.headers["cache-control"] == "no-cache, no-store"
            assert "content-length" not in stream.headers
            assert await client.send("one", {"b": base64.b64encode(b"\x00\x01").decode()}) == 200
            assert await client.send(*[f"m{n}" for n in range(50)]) == 200
            lines = await stream.messages(52)
            await stream.close()
        assert lines[0] == {"i": 1, "t": "one"}
        assert lines[1] == {"i": 2, "b": "AAE="}
        assert [line["t"] for line in lines[2:]] == [f"m{n}" for n in range(50)]
        assert [line["i"] for line in lines] == list(range(1, 53))

    async def test_poll_answers_with_what_is_waiting(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            for batch in range(3):
                assert await client.send(*[f"{batch}-{n}" for n in range(10)]) == 200
            received: list[dict[str, Any]] = []
            ack = 0
            while len(received) < 30:
                lines = [line for line in await client.poll(ack) if "h" not in line]
                received += lines
                if lines:
                    ack = lines[-1]["i"]
        assert [line["t"] for line in received] == [f"{b}-{n}" for b in range(3) for n in range(10)]
        assert [line["i"] for line in received] == list(range(1, 31))

    async def test_unicode_text_round_trip(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            await client.send("héllo \u2028 wörld 🎉 \n")
            lines = [line for line in await client.poll() if "h" not in line]
        assert lines == [{"i": 1, "t": "héllo \u2028 wörld 🎉 \n"}]

    async def test_query_and_path_reach_the_session(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/room/{name}")(recorder.endpoint())
        async with serving(app) as server:
            await FallbackClient(server.port, "/room/blue").open("user=ann")
            session = await recorder.next_open()
            assert session.path == "/room/blue"
            assert session.path_params == {"name": "blue"}
            assert session.query == {"user": ["ann"]}
            assert session.request.path == "/room/blue?user=ann"
            assert session.remote_address[0] == "127.0.0.1"

    async def test_templates_with_parameters_do_not_swallow_fallback_paths(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/r/{a}")(recorder.endpoint())
        # Would match /r/one/_fd/open as b="_fd", c="open".
        app.endpoint("/r/{a}/{b}/{c}")(Recorder().endpoint())
        async with serving(app) as server:
            await FallbackClient(server.port, "/r/one").open()
            session = await recorder.next_open()
        assert session.path_params == {"a": "one"}


class TestExactlyOnce:
    async def test_retried_post_is_delivered_once(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            session = await recorder.next_open()
            batch = {"q": 0, "m": ["a", "b"]}
            assert (await client.post(batch))[0] == 200
            # The response was lost: the client sends the same batch again.
            status, body = await client.post(batch)
            assert (status, body) == (200, b"ok: already delivered\n")
            # A batch that skips a number is refused, and not delivered.
            status, body = await client.post({"q": 2, "m": ["skipped"]})
            assert status == 409 and body == b"Conflict: batch 2 before 1\n"
            assert (await client.post({"q": 1, "m": ["c"]}))[0] == 200
            await client.post({"c": 1000, "r": "done"})
            _, reason = await recorder.next_close()
        assert reason == CloseReason(1000, "done")
        messages = [value for kind, value in recorder.events if kind == "message"]
        assert messages == ["a", "b", "c"]
        assert recorder.events[0] == ("open", session)

    async def test_acknowledged_messages_are_forgotten(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            session = await recorder.next_open()
            stream = await client.stream()
            for n in range(3):
                await session.send(f"m{n}")
            assert [line["i"] for line in await stream.messages(3)] == [1, 2, 3]
            # Written to the stream, but kept until the client says it has them.
            assert session.buffered_amount == 3 * len(b'{"i":1,"t":"m0"}\n')
            assert await client.post({"a": 2}) == (200, b"ok\n")
            assert session.buffered_amount == len(b'{"i":3,"t":"m2"}\n')
            assert await client.post({"a": 3}) == (200, b"ok\n")
            assert session.buffered_amount == 0
            await stream.close()

    async def test_repoll_after_a_lost_response_gets_the_same_messages(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            await client.send("x", "y")
            first = [line for line in await client.poll(0) if "h" not in line]
            # That response never arrived: poll again from the same ack.
            again = [line for line in await client.poll(0) if "h" not in line]
            await client.send("z")
            after = [line for line in await client.poll(2) if "h" not in line]
        assert first == again == [{"i": 1, "t": "x"}, {"i": 2, "t": "y"}]
        assert after == [{"i": 3, "t": "z"}]

    async def test_a_new_stream_resumes_after_its_ack(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            stream = await client.stream()
            await client.send("1", "2", "3")
            assert [line["i"] for line in await stream.messages(3)] == [1, 2, 3]
            # The network dropped the stream after message 2 was processed.
            second = await client.stream(ack=2)
            # The older response is ended by the newer one.
            assert await stream.line() is None
            await client.send("4")
            lines = await second.messages(2)
            await second.close()
        assert lines == [{"i": 3, "t": "3"}, {"i": 4, "t": "4"}]


class TestLimits:
    async def test_message_over_max_message_size_closes_with_1009(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x", max_message_size=10)(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            status, body = await client.post({"q": 0, "m": ["short", "x" * 11]})
            assert status == 413
            assert body == b"Content Too Large: a message of 11 bytes (limit 10)\n"
            assert await stream.line() == {"c": 1009, "r": "message too big"}
            assert await stream.line() is None
            _, reason = await recorder.next_close()
        assert reason == CloseReason(1009, "message too big")
        # The batch was refused whole.
        assert [kind for kind, _ in recorder.events] == ["open", "close"]

    async def test_post_body_over_max_post_size_closes_the_session_with_1009(self) -> None:
        """Nothing after a batch too large could be delivered in order: the session closes
        with 1009 and the answer says so (it used to stay open, and every later batch got
        409 from a client that skipped the refused batch's number)."""
        recorder = Recorder()
        app = App(fallback=FallbackOptions(max_post_size=100))
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            status, body = await client.post({"q": 0, "m": ["x" * 200]})
            assert status == 413
            assert body.startswith(b"Content Too Large: a batch of 219 bytes (limit 100)")
            assert body.endswith(b"the session is closed (1009)\n")
            assert b"WebSocket" not in body
            assert await stream.line() == {"c": 1009, "r": "message too big"}
            _, reason = await recorder.next_close()
            assert reason == CloseReason(1009, "message too big")
            # Later batches find the session closing or gone, never a silent 409.
            assert await client.send("after") in (404, 410)
        assert [kind for kind, _ in recorder.events] == ["open", "close"]

    async def test_open_tells_the_client_its_limits(self) -> None:
        options = FallbackOptions(max_post_size=5000, max_inbox=7)
        async with serving(echo_app(fallback=options)) as server:
            answer = await FallbackClient(server.port, "/echo").open()
        assert (answer["p"], answer["n"]) == (5000, 7)

    async def test_open_body_over_max_post_size_gets_413(self) -> None:
        async with serving(echo_app(fallback=FallbackOptions(max_post_size=100))) as server:
            client = FallbackClient(server.port, "/echo")
            status, _, body = await client.request("POST", client.url("open"), b"x" * 300)
        assert (status, body) == (
            413,
            b"Content Too Large: a request body of 300 bytes (limit 100)\n",
        )

    async def test_batch_over_max_inbox_is_refused_for_good(self) -> None:
        """A batch of more messages than max_inbox could never be delivered (it got 503 for
        ever, even with an empty inbox): 413, and the session closes with 1009."""
        recorder = Recorder()
        app = App(fallback=FallbackOptions(max_inbox=4))
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            assert await client.send("1", "2", "3", "4") == 200
            status, body = await client.post({"q": 1, "m": ["m"] * 5})
            assert status == 413
            assert body == (
                b"Content Too Large: a batch of 5 messages (limit 4);"
                b" the session is closed (1009)\n"
            )
            assert await stream.line() == {"c": 1009, "r": "message too big"}
            _, reason = await recorder.next_close()
        assert reason.code == 1009
        assert [m for kind, m in recorder.events if kind == "message"] == ["1", "2", "3", "4"]

    async def test_default_inbox_takes_a_batch_of_1024(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            assert await client.send(*[f"m{n}" for n in range(1024)]) == 200
            status, _ = await client.post({"q": 1, "m": ["m"] * 1025})
        assert status == 413

    async def test_full_inbox_answers_503_and_keeps_the_batch_number(self) -> None:
        release = asyncio.Event()
        app = App(fallback=FallbackOptions(max_inbox=3))
        seen: list[str] = []

        @app.on_message("/slow")
        async def slow(session: Session, message: str) -> None:
            seen.append(message)
            await release.wait()

        async with serving(app) as server:
            client = FallbackClient(server.port, "/slow")
            await client.open()
            assert await client.send("1", "2") == 200
            status, body = await client.post({"q": 1, "m": ["3", "4", "5"]})
            assert status == 503 and b"retry" in body
            release.set()
            async with asyncio.timeout(5):
                while await client.send("3", "4", "5") != 200:
                    await asyncio.sleep(0.05)  # the client's retry delay, not a synchronisation
            await client.post({"c": 1000})
        assert seen[:5] == ["1", "2", "3", "4", "5"]

    async def test_slow_consumer_policy_applies(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x", max_buffered=200, overflow="close")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            session = await recorder.next_open()
            # Nobody polls and acks: what waits for the client grows to the bound.
            sent = [session.send_nowait("y" * 60) for _ in range(10)]
            lines = await client.poll()
            _, reason = await recorder.next_close()
        assert sent[:2] == [True, True]
        assert False in sent
        # What was accepted arrives, then the close of the "close" policy.
        assert [line.get("i") for line in lines[:-1]] == list(range(1, sent.index(False) + 1))
        assert lines[-1] == {"c": 1013, "r": "try again later"}
        assert reason.code == 1013


async def _opens(server: Any, count: int) -> list[tuple[int, str]]:
    """``count`` fallback opens of /echo: each one's status and Retry-After."""
    found = []
    for _ in range(count):
        client = FallbackClient(server.port, "/echo")
        status, headers, _ = await client.request("POST", client.url("open"), b"")
        found.append((status, headers.get("retry-after", "")))
    return found


async def _until_open(server: Any, timeout: float = 5) -> FallbackClient:
    """Open a fallback session, retrying while a slot is being freed."""
    async with asyncio.timeout(timeout):
        while True:
            client = FallbackClient(server.port, "/echo")
            status, _, body = await client.request("POST", client.url("open"), b"")
            if status == 200:
                client.sid = json.loads(body)["s"]
                return client
            await asyncio.sleep(0.05)  # the session's task ends soon after its close


class TestAdmission:
    """Fallback sessions are admitted and counted as WebSocket connections are."""

    async def test_limits_count_both_transports(self) -> None:
        app = echo_app(limits=Limits(max_connections=2, max_per_ip=2))
        async with serving(app) as server:
            async with connect(url(server, "/echo")) as ws:
                first = FallbackClient(server.port, "/echo")
                await first.open()
                # Two open (one of each): every further open is refused, on both transports.
                assert await _opens(server, 5) == [(503, "1")] * 5
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url(server, "/echo")):
                        pass
                assert refused.value.status_code == 503
                # A closed session frees its slot.
                assert await first.post({"c": 1000}) == (200, b"ok\n")
                second = await _until_open(server)
                assert await _opens(server, 1) == [(503, "1")]
                await ws.send("still here")
                assert await wait_for(ws.recv()) == "still here"
            # The WebSocket's slot is freed too.
            third = await _until_open(server)
            await second.post({"c": 1000})
            await third.post({"c": 1000})
        assert app.metrics.refused  # counted as refusals

    async def test_per_ip_limit_applies_to_fallback_opens(self) -> None:
        app = echo_app(limits=Limits(max_connections=100, max_per_ip=2))
        async with serving(app) as server:
            statuses = await _opens(server, 4)
        assert [status for status, _ in statuses] == [200, 200, 429, 429]

    async def test_rate_limit_applies_to_fallback_opens(self) -> None:
        app = echo_app(limits=Limits(rate=0.001, burst=2))
        async with serving(app) as server:
            statuses = await _opens(server, 3)
        assert [status for status, _ in statuses] == [200, 200, 429]

    async def test_server_max_connections_counts_fallback_sessions(self) -> None:
        async with serving(echo_app(), max_connections=2) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            async with connect(url(server, "/echo")):
                assert [status for status, _ in await _opens(server, 3)] == [503] * 3
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url(server, "/echo")):
                        pass
                assert refused.value.status_code == 503
            await client.post({"c": 1000})
            await _until_open(server)
        assert server.refusals["capacity"] >= 4

    async def test_max_sessions(self) -> None:
        app = echo_app(fallback=FallbackOptions(max_sessions=2))
        async with serving(app) as server:
            statuses = await _opens(server, 3)
            # WebSocket connections are not fallback sessions.
            async with connect(url(server, "/echo")):
                pass
        assert statuses == [(200, ""), (200, ""), (503, "5")]

    async def test_body_to_another_path_is_refused_before_it_is_read(self) -> None:
        """Only a POST to a fallback open or send may carry a body: any other request with
        one is refused on its head (it could hold max_post_size bytes per connection)."""
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            for method, path in [
                ("POST", "/no/such/route"),
                ("POST", "/echo"),
                ("PUT", "/echo/_fd/send?s=x"),
                ("POST", "/echo/_fd/poll?s=x"),
            ]:
                # The head announces 1 MiB and none of it is sent: the answer comes anyway.
                stream = await client.start(method, path, headers={"Content-Length": str(2**20)})
                data = await wait_for(stream.reader.read())
                await stream.close()
                assert stream.status == 400, (method, path)
                assert b"a request body is not allowed" in data

    async def test_open_timeout_bounds_a_slow_body(self) -> None:
        async with serving(echo_app(), open_timeout=0.3) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /echo/_fd/open HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                + b"x" * 10
            )
            try:
                assert await wait_for(reader.read()) == b""  # dropped, never answered
            except ConnectionResetError:
                pass
            finally:
                writer.close()
            refusals = server.refusals
        assert refusals == {"open_timeout": 1}


class TestErrors:
    @pytest.mark.parametrize(
        ("method", "path", "status", "reason"),
        [
            ("GET", "/echo/_fd/open", 405, b"Method Not Allowed: open takes POST\n"),
            ("POST", "/echo/_fd/stream?s=x", 405, b"Method Not Allowed: stream takes GET\n"),
            ("GET", "/echo/_fd/teleport", 404, b"Not Found: unknown fallback action 'teleport'\n"),
            ("POST", "/nowhere/_fd/open", 404, b"Not Found: no endpoint at this path\n"),
            ("GET", "/echo/_fd/poll", 400, b"Bad Request: malformed session id\n"),
            ("GET", "/echo/_fd/poll?s=a.b", 400, b"Bad Request: malformed session id\n"),
            (
                "GET",
                "/echo/_fd/stream?s=me.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
                400,
                b"Bad Request: session id signature is invalid\n",
            ),
        ],
    )
    async def test_bad_requests_get_a_one_line_reason(
        self, method: str, path: str, status: int, reason: bytes
    ) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            got, _, body = await client.request(method, path, b"" if method == "POST" else None)
            assert (got, body) == (status, reason)
            # ... and the server goes on serving everyone else.
            await client.open()
            await client.send("still here")
            assert [line for line in await client.poll() if "h" not in line] == [
                {"i": 1, "t": "still here"}
            ]

    async def test_unknown_and_foreign_sessions(self) -> None:
        key = b"k" * 32
        app = echo_app(fallback=FallbackOptions(key=key, owner="here"))
        async with serving(app) as server:
            client = FallbackClient(server.port, "/echo")
            client.sid = SessionIds("here", key).new()
            status, _, body = await client.request("GET", client.url("poll"))
            assert (status, body) == (404, b"Not Found: no such session (closed or expired)\n")
            client.sid = SessionIds("there", key).new()
            status, _, body = await client.request("GET", client.url("poll"))
            assert (status, body) == (421, b"Misdirected Request: session of process there\n")

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b"not json", b"Bad Request: the body is not JSON\n"),
            (b"[1]", b"Bad Request: the body must be a JSON object\n"),
            (b'{"q": -1, "m": []}', b'Bad Request: "q" must be a non-negative integer\n'),
            (b'{"q": 0, "m": [1]}', b'Bad Request: a message must be a string or {"b": base64}\n'),
            (
                b'{"q": 0, "m": [{"b": "!!"}]}',
                b"Bad Request: a binary message is not valid base64\n",
            ),
            (b'{"c": 1006}', b"Bad Request: invalid close code or reason\n"),
        ],
    )
    async def test_bad_batches(self, payload: bytes, reason: bytes) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            assert await client.post(payload) == (400, reason)

    async def test_chunked_post_gets_411(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            stream = await client.start(
                "POST", client.url("send"), headers={"Transfer-Encoding": "chunked"}
            )
            assert stream.status == 411
            await stream.close()


class TestHeartbeatsAndClose:
    async def test_heartbeats_on_stream_and_poll(self) -> None:
        app = echo_app(fallback=FallbackOptions(heartbeat=0.2, disconnect_timeout=5))
        async with serving(app) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            stream = await client.stream()
            assert await stream.line() == {"h": 1}
            assert await stream.line() == {"h": 1}
            await stream.close()
            assert await client.poll() == [{"h": 1}]

    async def test_server_close_reaches_the_client(self) -> None:
        recorder = Recorder()
        app = App()

        class Closing(recorder.endpoint()):  # type: ignore[misc]
            async def on_message(self, session: Session, message: Any) -> None:
                recorder.events.append(("message", message))
                await session.send("last words")
                await session.close(4001, "bye")

        app.endpoint("/x")(Closing)
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            await client.send("close please")
            assert await stream.messages(2) == [
                {"i": 1, "t": "last words"},
                {"c": 4001, "r": "bye"},
            ]
            assert await stream.line() is None
            _, reason = await recorder.next_close()
            assert reason == CloseReason(4001, "bye")
            # A late poll (the stream's end was lost) still learns the close.
            assert await client.poll(1) == [{"c": 4001, "r": "bye"}]
            assert await client.send("too late") == 410

    async def test_close_reaches_a_poll_that_comes_later(self) -> None:
        async with serving(echo_app()) as server:
            client = FallbackClient(server.port, "/echo")
            await client.open()
            await client.send("close-me")
            assert await client.poll() == [{"c": 4001, "r": "bye"}]

    async def test_vanished_client_is_detected(self) -> None:
        recorder = Recorder()
        app = App(fallback=FallbackOptions(heartbeat=0.5, disconnect_timeout=0.3))
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            await stream.close()  # the tab went away
            _, reason = await recorder.next_close()
        assert reason == CloseReason(1006, "")

    async def test_server_shutdown_closes_with_1001(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            client = FallbackClient(server.port, "/x")
            await client.open()
            stream = await client.stream()
            await recorder.next_open()
        assert await stream.line() == {"c": 1001, "r": "server shutting down"}
        assert await stream.line() is None
        await stream.close()
        _, reason = await recorder.next_close()
        assert reason == CloseReason(1001, "server shutting down")


class TestSameAsWebSocket:
    async def test_endpoint_callbacks_are_the_same(self) -> None:
        """One conversation over WebSocket and over the fallback: the endpoint sees the same."""
        recorder = Recorder()
        app = App()
        app.endpoint("/x", codec=JSONCodec())(recorder.endpoint())
        async with serving(app) as server:
            async with connect(url(server, "/x")) as ws:
                await recorder.next_open()
                await ws.send('{"n": 1}')
                await ws.send('{"n": 2}')
                await ws.close(4000, "bye")
            await recorder.next_close()
            over_ws = list(recorder.events)
            recorder.events.clear()
            client = FallbackClient(server.port, "/x")
            await client.open()
            await recorder.next_open()
            await client.send('{"n": 1}', '{"n": 2}')
            await client.post({"c": 4000, "r": "bye"})
            await recorder.next_close()
            over_fallback = list(recorder.events)

        def shape(events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
            return [(kind, None if kind == "open" else value) for kind, value in events]

        assert (
            shape(over_ws)
            == shape(over_fallback)
            == [
                ("open", None),
                ("message", {"n": 1}),
                ("message", {"n": 2}),
                ("close", CloseReason(4000, "bye")),
            ]
        )
        # Both closes were the client's, and the metrics say so for both transports.
        closes = app.metrics.snapshot()
        assert closes['fullduplex_sessions_closed_total{code="4xxx",by="peer"}'] == 2
        assert 'fullduplex_sessions_closed_total{code="4xxx",by="server"}' not in closes

    async def test_broadcast_reaches_websocket_and_fallback_members(self) -> None:
        app = App()

        @app.on_message("/room", codec=JSONCodec())
        async def room(session: Session, message: Any) -> None:
            if message == "join":
                session.join("room")
                await session.send("joined")
            else:
                await session.group("room").broadcast(message)

        async with serving(app) as server:
            client = FallbackClient(server.port, "/room")
            await client.open()
            stream = await client.stream()
            await client.send('"join"')
            assert await stream.messages(1) == [{"i": 1, "t": '"joined"'}]
            async with connect(url(server, "/room")) as ws:
                await ws.send('"join"')
                assert await wait_for(ws.recv()) == '"joined"'
                await ws.send(json.dumps({"from": "ws"}))
                assert json.loads(await wait_for(ws.recv())) == {"from": "ws"}
                assert await stream.messages(1) == [{"i": 2, "t": '{"from":"ws"}'}]
                await client.send(json.dumps({"from": "fallback"}))
                assert json.loads(await wait_for(ws.recv())) == {"from": "fallback"}
            await stream.close()

    async def test_fallback_can_be_turned_off(self) -> None:
        async with serving(echo_app(fallback=False)) as server:
            client = FallbackClient(server.port, "/echo")
            status, _, _ = await client.request("POST", "/echo/_fd/open", b"")
            assert status == 404
            # Without the fallback, no request may have a body (as before it existed).
            status, _, _ = await client.request("POST", "/echo/_fd/send?s=x", b"{}")
            assert status == 400
