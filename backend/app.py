"""The demo backend from the article the project grew from, as an aiohttp app.

Each process draws one uuid4 at start and answers every GET with it: JSON `{"uuid": ...}` for
programs, a page coloured after the uuid for browsers. Same uuid (same colour) = same backend.

Every path except `/healthz` answers, not only `/`: behind a path-based Ingress (`/app` with no
rewrite) the backend sees the full path, and a 404 there would hide whether stickiness works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from string import Template
from uuid import UUID, uuid4

import uvloop
from aiohttp import hdrs, web

# Browsers cache GETs; every reload must reach the proxy to show where it routes.
_HEADERS = {hdrs.CACHE_CONTROL: "no-store", hdrs.VARY: hdrs.ACCEPT}

_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>backend $short</title>
<style>
body { margin: 0; min-height: 100vh; display: flex; flex-direction: column; align-items: center;
       justify-content: center; gap: 1.5rem; font-family: system-ui, sans-serif;
       background: hsl($hue, 70%, 93%); color: hsl($hue, 60%, 25%); }
.uuid { font: bold clamp(1rem, 4vw, 3.2rem) ui-monospace, monospace; color: #fff;
        background: hsl($hue, 65%, 40%); padding: 1.5rem 2rem; border-radius: 1rem;
        word-break: break-all; text-align: center; }
</style>
</head>
<body>
<div class="uuid">$uuid</div>
<p>Reload: the same colour means the same backend.</p>
</body>
</html>
""")


def hue_of(instance: UUID) -> int:
    """A hue in [0, 360) from the uuid's first two bytes, so each backend has its own colour."""
    return int.from_bytes(instance.bytes[:2], "big") * 360 // 65536


def render_page(instance: UUID) -> str:
    text = str(instance)
    return _PAGE.substitute(uuid=text, short=text[:8], hue=hue_of(instance))


def prefers_html(accept: str) -> bool:
    """Whether the Accept header ranks text/html above application/json (ties go to JSON)."""
    ranges = _media_ranges(accept)
    return _quality(ranges, "text/html") > _quality(ranges, "application/json")


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0  # a malformed range should not win the negotiation
        if media_range:
            ranges.append((media_range.lower(), quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The q of the most specific range matching `media_type` (RFC 9110 §12.5.1)."""
    kind = media_type.partition("/")[0]
    specificity_of = {media_type: 2, f"{kind}/*": 1, "*/*": 0}
    best_specificity, quality = -1, 0.0
    for media_range, range_quality in ranges:
        specificity = specificity_of.get(media_range, -1)
        if specificity > best_specificity:
            best_specificity, quality = specificity, range_quality
    return quality


def create_app(instance: UUID | None = None) -> web.Application:
    """The app for one backend identity; a fresh uuid4 unless `instance` is given."""
    identity = instance or uuid4()
    # Bodies are built once: the demo app doubles as the benchmark backend and must stay cheap.
    json_body = json.dumps({"uuid": str(identity)}).encode()
    html_body = render_page(identity).encode()

    async def identify(request: web.Request) -> web.Response:
        if prefers_html(request.headers.get(hdrs.ACCEPT, "")):
            return web.Response(
                body=html_body, content_type="text/html", charset="utf-8", headers=_HEADERS
            )
        return web.Response(body=json_body, content_type="application/json", headers=_HEADERS)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/{path:.*}", identify)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve `app` until SIGINT or SIGTERM, announcing the bound address on stdout."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        # One flushed line: a parent process (the demo, tests) reads it to learn the port.
        print(f"listening on http://{shown_host}:{bound_port}", flush=True)
        await _until_stop_signal()
    finally:
        await runner.cleanup()


async def _until_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0 picks a free one)")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sticky-backend",
        description="Demo backend: answers every GET with this process's uuid.",
        allow_abbrev=False,
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    parser.add_argument(
        "--port", type=_port, default=8080, help="port to bind; 0 picks a free one (default: 8080)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        uvloop.run(serve(create_app(), args.host, args.port))
    except OSError as error:
        sys.exit(f"sticky-backend: error: cannot listen on {args.host}:{args.port}: {error}")
