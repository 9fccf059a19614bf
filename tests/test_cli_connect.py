"""Tests for ``fullduplex connect``: the interactive client, through pipes and a pseudo-terminal.

Every client runs as a real subprocess (``python -m fullduplex connect``) against a real
server: ``python -m fullduplex echo`` (the ``echo_url`` fixture) or an in-process server when
the test needs a particular behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fullduplex.asyncio.server import Server, serve
from fullduplex.cli import main
from fullduplex.protocol.handshake import Request, Response
from tests.asyncio.utils import Handlers, echo
from tests.helpers import seconds
from tests.proxy_servers import HTTPConnectProxy, SOCKS5Proxy

COMMAND = [sys.executable, "-m", "fullduplex", "connect"]


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment for a client: no proxy variables from the machine, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.lower().endswith("_proxy")}
    env.update(extra)
    return env


def run(*args: str, stdin: bytes = b"", **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run the client to completion with ``stdin`` as its input (a pipe); bounded in time."""
    result = subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        timeout=seconds(30),
        env=clean_environment(**extra_env),
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


@contextlib.asynccontextmanager
async def client(
    *args: str, stdout: int = asyncio.subprocess.PIPE, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start the client with pipes, from a test that serves on its own event loop.

    The test writes to its stdin and reads its output; the client is killed on exit if it is
    still running.
    """
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=clean_environment(**(env or {})),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.communicate(), seconds(10))


async def finish(
    proc: asyncio.subprocess.Process, stdin: bytes | None = b""
) -> tuple[int, str, str]:
    """Write ``stdin`` and close it (unless None), wait for the exit; (status, out, err)."""
    if stdin is None:
        stdout, stderr = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()),  # type: ignore[union-attr]
            seconds(30),
        )
        await asyncio.wait_for(proc.wait(), seconds(30))
    else:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), seconds(30))
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def run_async(*args: str, stdin: bytes = b"", **extra_env: str) -> tuple[int, str, str]:
    """Like :func:`run`, without blocking the loop that serves the test's server."""
    async with client(*args, env=extra_env) as proc:
        return await finish(proc, stdin)


def read_line(fd: int) -> bytes:
    """Read one line from a pipe, byte by byte (blocking: run it in a thread)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def url(server: Server, path: str = "/") -> str:
    """The ws:// URL of ``server``."""
    return f"ws://127.0.0.1:{server.port}{path}"


class TestArguments:
    """Parsing, without connecting."""

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["connect", "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for option in (
            "--header",
            "--subprotocol",
            "--compression",
            "--no-compression",
            "--ping-interval",
            "--insecure",
            "--proxy",
            "--json",
            "--wait",
        ):
            assert option in out
        assert "at least as many messages as it sent" in " ".join(out.split())

    def test_listed(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "connect" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "args",
        [
            ["--header", "no-colon"],
            ["--header", ":value"],
            ["--ping-interval", "soon"],
            ["--ping-interval", "-1"],
            ["--wait", "x"],
        ],
    )
    def test_bad_values(self, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["connect", "ws://127.0.0.1:1/", *args])
        assert info.value.code == 2
        assert "usage" in capsys.readouterr().err

    def test_url_required(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["connect"])
        assert info.value.code == 2


class TestPipes:
    """Non-interactive use: lines in, messages out, exit status."""

    def test_echo(self, echo_url: str) -> None:
        result = run(echo_url, stdin=b"hi\n")
        assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")

    def test_lines(self, echo_url: str) -> None:
        # CRLF ends a line too; an empty line is an empty message; the last line may lack \n.
        result = run(echo_url, stdin="one\r\n\nzwei ü\nlast".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout == "one\n\nzwei ü\nlast\n"

    def test_many_lines_in_order(self, echo_url: str) -> None:
        lines = [f"line {i}" for i in range(1000)]
        result = run(echo_url, stdin="\n".join(lines).encode() + b"\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == lines

    async def test_reader_goes_away(self) -> None:
        """`... | head -1`: standard output closes early; the client closes quietly, status 0."""
        connections: list[Any] = []
        go_on = asyncio.Event()

        async def two_messages(ws: Any) -> None:
            connections.append(ws)
            await ws.send("first")
            closed = asyncio.ensure_future(ws.wait_closed())
            woken = asyncio.ensure_future(go_on.wait())
            await asyncio.wait([closed, woken], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            woken.cancel()
            await ws.send("second")  # printing this one finds nobody reading
            async for _ in ws:
                pass

        async with serve(two_messages, "127.0.0.1", 0) as server:
            read_end, write_end = os.pipe()
            try:
                async with client(url(server), stdout=write_end) as proc:
                    os.close(write_end)
                    first = await asyncio.wait_for(
                        asyncio.to_thread(read_line, read_end), seconds(10)
                    )
                    assert first == b"first\n"
                    os.close(read_end)  # like `head -1` exiting
                    read_end = -1
                    go_on.set()
                    status = await asyncio.wait_for(proc.wait(), seconds(10))
                    assert proc.stderr is not None
                    err = await asyncio.wait_for(proc.stderr.read(), seconds(10))
            finally:
                go_on.set()
                if read_end != -1:
                    os.close(read_end)
            await asyncio.wait_for(connections[0].wait_closed(), seconds(10))
        assert (status, err) == (0, b"")
        assert connections[0].close_code == 1000

    def test_file_as_input(self, echo_url: str, tmp_path: Path) -> None:
        lines = tmp_path / "lines.txt"
        lines.write_text("from\na file\n")
        with lines.open("rb") as stdin:
            result = subprocess.run(
                [*COMMAND, echo_url],
                stdin=stdin,
                capture_output=True,
                timeout=seconds(30),
                env=clean_environment(),
                check=False,
            )
        assert (result.returncode, result.stdout, result.stderr) == (0, b"from\na file\n", b"")

    def test_no_input(self, echo_url: str) -> None:
        result = run(echo_url, stdin=b"")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    def test_invalid_utf8_is_replaced(self, echo_url: str) -> None:
        result = run(echo_url, stdin=b"a\xffb\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "a\ufffdb\n"

    def test_json(self, echo_url: str) -> None:
        result = run(echo_url, "--json", stdin=b'{"a": [1, "\\u00e9"]}\nnot json\n')
        assert result.returncode == 0, result.stderr
        assert result.stdout == '{\n  "a": [\n    1,\n    "é"\n  ]\n}\nnot json\n'

    async def test_binary(self) -> None:
        async def binary_echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message.encode())

        async with serve(binary_echo, "127.0.0.1", 0) as server:
            status, out, err = await run_async(url(server), stdin=b"hi\n\n")
        assert (status, err) == (0, "")
        assert out == "[binary] 6869\n[binary] \n"

    async def test_headers_subprotocol_compression(self) -> None:
        async def describe(ws: Any) -> None:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "none").split(";")[0]
            async for message in ws:
                await ws.send(
                    f"{message} {ws.request.headers.get('X-One')} "
                    f"{ws.request.headers.get('X-Two')} {ws.subprotocol} {extensions}"
                )

        async with serve(describe, "127.0.0.1", 0, subprotocols=["chat", "superchat"]) as server:
            status, out, err = await run_async(
                url(server),
                "--header",
                "X-One: 1",
                "-H",
                "X-Two:two: parts",
                "--subprotocol",
                "superchat",
                "-s",
                "chat",
                stdin=b"a\n",
            )
            assert (status, err) == (0, "")
            assert out == "a 1 two: parts chat permessage-deflate\n"

            status, out, err = await run_async(url(server), "--no-compression", stdin=b"b\n")
            assert (status, err) == (0, "")
            assert out == "b None None None none\n"

    async def test_wait_bounds_the_wait_for_replies(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async with client(url(server), "--wait", "0.2") as proc:
                result = asyncio.ensure_future(finish(proc, b"never answered\n"))
                server_ws = await handlers.next()
                assert await asyncio.wait_for(server_ws.recv(), seconds(10)) == "never answered"
                status, out, err = await result
                await asyncio.wait_for(server_ws.wait_closed(), seconds(10))
            handlers.release()
        assert (status, out, err) == (0, "", "")
        assert server_ws.close_code == 1000  # the client closed normally after --wait


class TestClose:
    """How the session ends, and the exit status."""

    @pytest.mark.parametrize(
        ("code", "reason", "status"),
        [(1000, "", 0), (1001, "going away", 0), (4000, "bye now", 1), (1011, "oops", 1)],
    )
    async def test_server_closes(self, code: int, reason: str, status: int) -> None:
        async def close_after_one(ws: Any) -> None:
            message = await ws.recv()
            await ws.send(message)
            await ws.close(code, reason)

        async with serve(close_after_one, "127.0.0.1", 0) as server, client(url(server)) as proc:
            assert proc.stdin is not None
            proc.stdin.write(b"last words\n")  # and the input stays open
            result = await finish(proc, None)
        assert result == (status, "last words\n", f"closed {code} {reason}".rstrip() + "\n")

    async def test_server_drops_connection(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server, client(url(server)) as proc:
            server_ws = await handlers.next()
            server_ws._transport.abort()
            status, out, err = await finish(proc, None)
            handlers.release()
        assert (status, out, err) == (1, "", "closed 1006\n")

    def test_message_over_local_limit_says_so(self, echo_url: str) -> None:
        # The echo server takes 64 MiB; the reply of 2,000 bytes is over this client's 1,000.
        result = run(echo_url, "--max-message-size", "1000", stdin=b"x" * 2000 + b"\n")
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("failed: "), result.stderr
        assert "over the local limit (1000 bytes)" in result.stderr
        assert result.stderr.rstrip().endswith("sent 1009 (message too big)")
        assert "closed 1006" not in result.stderr

    def test_help_states_both_defaults(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["connect", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "default 64 MiB here; the library's connect() defaults to 1 MiB" in text

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
    async def test_signal_closes_normally(self, signum: int) -> None:
        connections: list[Any] = []

        async def recording_echo(ws: Any) -> None:
            connections.append(ws)
            await echo(ws)

        async with serve(recording_echo, "127.0.0.1", 0) as server, client(url(server)) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            # A reply printed means the session runs, its signal handlers in place.
            proc.stdin.write(b"ready\n")
            assert await asyncio.wait_for(proc.stdout.readline(), seconds(10)) == b"ready\n"
            proc.send_signal(signum)
            status, out, err = await finish(proc, None)
            await asyncio.wait_for(connections[0].wait_closed(), seconds(10))
        assert (status, out, err) == (0, "", "")
        assert connections[0].close_code == 1000


class TestConnectionFailure:
    """Exit status 2 and one line on standard error."""

    def test_refused(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
            result = run(f"ws://127.0.0.1:{sock.getsockname()[1]}/")
        assert result.returncode == 2
        assert result.stdout == ""
        assert "cannot connect" in result.stderr
        assert "ConnectionRefusedError" in result.stderr

    def test_invalid_uri(self) -> None:
        result = run("http://127.0.0.1:1/")
        assert result.returncode == 2
        assert "not a valid WebSocket URI" in result.stderr

    async def test_rejected(self) -> None:
        def forbid(ws: Any, request: Request) -> Response:
            return ws.respond(403, "no")  # type: ignore[no-any-return]

        async with serve(echo, "127.0.0.1", 0, process_request=forbid) as server:
            status, out, err = await run_async(url(server), stdin=b"x\n")
        assert (status, out) == (2, "")
        assert "HTTP 403" in err


class TestProxy:
    """--proxy and the proxy environment variables."""

    async def test_http_proxy_option(self, echo_url: str) -> None:
        async with HTTPConnectProxy() as proxy:
            status, out, err = await run_async(echo_url, "--proxy", proxy.url, stdin=b"via\n")
        assert (status, out, err) == (0, "via\n", "")
        assert proxy.tunnels == 1

    async def test_socks_proxy_from_environment(self, echo_url: str) -> None:
        async with SOCKS5Proxy(remote_dns=True) as proxy:
            status, out, err = await run_async(echo_url, stdin=b"socks\n", all_proxy=proxy.url)
        assert (status, out, err) == (0, "socks\n", "")
        assert proxy.tunnels == 1

    async def test_proxy_none(self, echo_url: str) -> None:
        async with HTTPConnectProxy() as proxy:
            status, out, _ = await run_async(
                echo_url, "--proxy", "none", stdin=b"direct\n", http_proxy=proxy.url
            )
        assert (status, out) == (0, "direct\n")
        assert proxy.connections == 0

    def test_invalid_proxy(self, echo_url: str) -> None:
        result = run(echo_url, "--proxy", "gopher://127.0.0.1:70")
        assert result.returncode == 2
        assert "proxy URL" in result.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl: (cert, key)."""
    directory = tmp_path_factory.mktemp("cli-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
            timeout=seconds(60),
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a certificate: {exc}")
    return cert, key


class TestTLS:
    """wss:// and --insecure."""

    async def test_insecure(self, certificate: tuple[Path, Path]) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
            secure_url = f"wss://127.0.0.1:{server.port}/"
            status, out, err = await run_async(secure_url, stdin=b"x\n")
            assert (status, out) == (2, "")
            assert "CERTIFICATE_VERIFY_FAILED" in err

            status, out, err = await run_async(secure_url, "--insecure", stdin=b"secret\n")
            assert (status, out, err) == (0, "secret\n", "")


# Run the client with the pseudo-terminal as its controlling terminal, so that Ctrl-C typed
# into the terminal becomes SIGINT as it does for a person (start_new_session makes the child
# a session leader; TIOCSCTTY then adopts the terminal on its standard input).
_WITH_CONTROLLING_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """The master side of a pseudo-terminal running the client."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.output = b""

    def type(self, data: bytes) -> None:
        """Type ``data`` (b"\\x04" is Ctrl-D, b"\\x03" Ctrl-C)."""
        os.write(self.fd, data)

    def expect(self, text: bytes, count: int = 1, timeout: float = 10) -> None:
        """Read until ``text`` was shown ``count`` times in all, within ``seconds(timeout)``."""
        deadline = seconds(timeout)
        while self.output.count(text) < count:
            ready, _, _ = select.select([self.fd], [], [], deadline)
            if not ready:
                raise AssertionError(f"{text!r} x{count} not shown; screen: {self.output!r}")
            self.output += self.read_some()

    def read_some(self) -> bytes:
        """Read what is there; b"" once the client has closed the terminal."""
        try:
            return os.read(self.fd, 65536)
        except OSError:  # EIO: no process has the terminal open any more
            return b""

    def drain(self, timeout: float = 10) -> None:
        """Read until the client has closed the terminal (it exited)."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], seconds(timeout))
            if not ready:
                raise AssertionError(f"the terminal stayed open; screen: {self.output!r}")
            data = self.read_some()
            if not data:
                return
            self.output += data


@contextlib.contextmanager
def terminal(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], Terminal]]:
    """Run the client in a pseudo-terminal; kill it on exit if it still runs."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_CONTROLLING_TERMINAL, *COMMAND, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=clean_environment(),
    )
    os.close(slave)
    try:
        yield proc, Terminal(master)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(seconds(10))
        os.close(master)


class TestTerminal:
    """Interactive use in a (pseudo-)terminal, as a person types."""

    def test_type_and_ctrl_d(self, echo_url: str) -> None:
        with terminal(echo_url) as (proc, screen):
            screen.expect(b"Ctrl-D or Ctrl-C to close")
            screen.type(b"hello terminal\n")
            # Once echoed by the terminal as typed, once printed as the server's reply.
            screen.expect(b"hello terminal\r\n", count=2)
            screen.type(b"second\n")
            screen.expect(b"second\r\n", count=2)
            screen.type(b"\x04")  # Ctrl-D at the start of a line: end of input
            screen.drain()
            assert proc.wait(seconds(10)) == 0
        assert b"closed" not in screen.output

    def test_ctrl_c(self, echo_url: str) -> None:
        with terminal(echo_url) as (proc, screen):
            screen.expect(b"Ctrl-D or Ctrl-C to close")
            screen.type(b"before\n")
            screen.expect(b"before\r\n", count=2)
            screen.type(b"\x03")  # Ctrl-C: SIGINT from the terminal
            screen.drain()
            assert proc.wait(seconds(10)) == 0
        assert b"Traceback" not in screen.output
