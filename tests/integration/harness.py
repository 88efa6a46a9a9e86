"""Real servers on 127.0.0.1 port 0 for the tests: upstream apps that say who they are."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.app.runtime import ProxyServer
from proxy.control.sources.source import SnapshotSink
from proxy.core.model import Endpoint
from proxy.core.routing import Snapshot


@dataclass
class Upstream:
    """An upstream app that says who it is; stoppable mid-test.

    `/` and any other path echo JSON {"name", "method", "path_qs", "headers", "body_size"};
    `/stream` sends a chunked answer in two parts, the second only after `release` is set;
    `/slow` answers after `slow_seconds`; `/big?size=N` sends N bytes; `/bytes?size=N` sends N
    bytes of `pattern` (`&chunked`: in chunks); `/ws` is a WebSocket
    echo that prefixes its name and closes with code 4001 on "bye"; `POST /sink?delay=S` reads
    nothing for S seconds, then counts the body as it streams.
    `transports` holds every connection a request came on.
    """

    name: str
    runner: web.AppRunner
    port: int
    requests: int = 0
    transports: set[object] = field(default_factory=set)
    set_cookies: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    slow_seconds: float = 0.0
    host: str = "127.0.0.1"  # any 127.0.0.0/8 address: pods that share a port, as in a cluster

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_upstream(
    name: str, port: int = 0, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Upstream:
    """An `Upstream` on `host`:`port` (0: any free one), speaking TLS with `tls` if given; the
    echo then also says which client certificate's subject it was shown."""
    upstream: Upstream

    async def echo(request: web.Request) -> web.StreamResponse:
        upstream.requests += 1
        upstream.transports.add(request.transport)
        body = await request.read()
        response = web.json_response(
            {
                "name": name,
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers],
                "body_size": len(body),
                **({"client_cert": _client_name(request)} if tls else {}),
            }
        )
        for cookie in upstream.set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    async def stream(request: web.Request) -> web.StreamResponse:
        upstream.requests += 1
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first;")
        await upstream.release.wait()
        await response.write(b"second")
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        upstream.requests += 1
        await asyncio.sleep(upstream.slow_seconds)
        return web.Response(text=name)

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_get("/stream", stream)

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        block = b"x" * 65536
        for offset in range(0, size, len(block)):
            await response.write(block[: size - offset])
        return response

    async def counted(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        chunked = "chunked" in request.query
        response = web.StreamResponse(headers={} if chunked else {"Content-Length": str(size)})
        if chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        for offset in range(0, size, 65536):
            await response.write(pattern(offset, min(65536, size - offset)))
        await response.write_eof()
        return response

    async def websocket(request: web.Request) -> web.StreamResponse:
        upstream.requests += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.data == "bye":
                await ws.close(code=4001, message=b"bye")
            else:
                await ws.send_str(f"{name}:{message.data}")
        return ws

    async def sink(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("delay", "0")))
        size = 0
        async for block in request.content.iter_any():
            size += len(block)
        return web.json_response({"name": name, "body_size": size})

    app.router.add_post("/sink", sink)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/bytes", counted)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server((host, port))
    await web.SockSite(runner, sock, ssl_context=tls).start()
    upstream = Upstream(name, runner, sock.getsockname()[1], host=host)
    return upstream


def pattern(offset: int, size: int) -> bytes:
    """`size` bytes of /bytes' answer from `offset`: each byte says where it is, so a byte lost,
    doubled or moved shows."""
    return bytes((offset + index) % 251 for index in range(size))


def _client_name(request: web.Request) -> str | None:
    """The common name of the certificate a TLS client showed; None if it showed none."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    subject = (peer or {}).get("subject", ())
    names = [value for rdn in subject for key, value in rdn if key == "commonName"]
    return names[0] if names else None


def url(server: ProxyServer, path: str = "/") -> str:
    assert server.address is not None
    return f"http://{server.address}{path}"


async def connect(server: ProxyServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the proxy's listener."""
    assert server.address is not None
    return await asyncio.open_connection(server.address.host, server.address.port)


async def raw_request(server: ProxyServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection (or `timeout`)."""
    reader, writer = await connect(server)
    writer.write(data)
    await writer.drain()
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    finally:
        writer.close()
    return b"".join(chunks)


async def start_app(name: str, handler: Handler, host: str = "127.0.0.1") -> Upstream:
    """An `Upstream` on `host` (a free port) whose every request `handler` answers."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server((host, 0))
    await web.SockSite(runner, sock).start()
    return Upstream(name, runner, sock.getsockname()[1], host=host)


@dataclass
class RawUpstream:
    """A TCP server answering each connection's first request head with fixed bytes, then closing
    or, with `close=False`, holding the connection without reading: upstream behaviour the aiohttp
    app will not produce."""

    server: asyncio.Server
    port: int
    received: list[bytes] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    async def stop(self) -> None:
        self.done.set()
        self.server.close()
        await self.server.wait_closed()


async def start_raw_upstream(answer: bytes, close: bool = True) -> RawUpstream:
    raw: RawUpstream

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw.received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
            if not close:
                writer.transport.pause_reading()  # type: ignore[attr-defined]
                await raw.done.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw = RawUpstream(server, server.sockets[0].getsockname()[1])
    return raw


@dataclass
class Recorded:
    """One request as a strict upstream read it off the wire."""

    connection: int  # which upstream connection it came on, numbered from 0
    request_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class RecordingUpstream:
    """A strict keep-alive HTTP/1.1 upstream that answers each request as soon as its head is in,
    before reading the body (as servers answer a 404 or 405), then reads the body its head
    declares and records the request. So a request the proxy sent short makes the next one on
    the same connection a mangled record. `POST /switch` with Upgrade is answered 101 after its
    body, and the connection then echoes what it receives."""

    server: asyncio.Server
    port: int
    requests: list[Recorded] = field(default_factory=list)
    tunnelled: bytearray = field(default_factory=bytearray)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_recording_upstream() -> RecordingUpstream:
    recorder: RecordingUpstream
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connection, connections = connections, connections + 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head[:-4].split(b"\r\n")
                headers = [(n.strip().lower(), v.strip()) for n, _, v in
                           (raw.partition(b":") for raw in lines)]  # fmt: skip
                fields = dict(headers)
                switch = line.startswith(b"POST /switch ") and b"upgrade" in fields
                if not switch:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if b"content-length" in fields:
                    body = await reader.readexactly(int(fields[b"content-length"]))
                elif fields.get(b"transfer-encoding") == b"chunked":
                    body = await _read_chunked(reader)
                else:
                    body = b""
                recorder.requests.append(Recorded(connection, line, headers, body))
                if switch:
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                                 b"Upgrade: websocket\r\n\r\n")  # fmt: skip
                    while data := await reader.read(65536):
                        recorder.tunnelled += data
                        writer.write(data)
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    recorder = RecordingUpstream(server, server.sockets[0].getsockname()[1])
    return recorder


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")  # the empty trailer section
    return body


class GatedSource:
    """A source that publishes its snapshot once `gate` is set, then has nothing more to say,
    like a Kubernetes source waiting for its first lists."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.gate = asyncio.Event()

    async def run(self, sink: SnapshotSink) -> None:
        await self.gate.wait()
        sink.publish(self.snapshot)
        await asyncio.Event().wait()  # until cancelled
