"""Configuration text for the nginx backends and for the nginx and HAProxy sticky proxies.

The proxies are configured to do the work sticky-proxy does on every request (docs/behaviour.md), so
the comparison is of implementations, not of feature sets: cookie affinity with a Set-Cookie for
new clients, pooled keep-alive upstream connections, and the X-Forwarded-* / X-Real-IP /
X-Request-ID headers ingress-nginx adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Requests per keep-alive connection before nginx closes it: ingress-nginx's upstream default.
# Far above nginx's client default (1000) so reconnects cost nothing measurable (one per 10,000
# requests), but bounded: nginx frees some per-connection memory only when a connection closes,
# and with 1,000,000 the backend grew from 14 to 90 MB under the browser scenario.
KEEPALIVE_REQUESTS = 10_000
# Room for 2,000 idle clients plus their upstream connections, with margin; twice this in file
# descriptors stays under 20,000, a common hard limit (containers), which HAProxy must not exceed.
MAX_CONNECTIONS = 8_000
# The nginx proxy's upstream keep-alive cache: the same bound as sticky-proxy's idle pool per
# endpoint (proxy/dataplane/upstream.py MAX_IDLE_PER_ENDPOINT); every sticky request goes to one
# endpoint.
UPSTREAM_KEEPALIVE = 128
ONE_MB_PATH = "/1mb"
ONE_MB = 1 << 20  # the body served there


def _nginx_main(tmp: Path, name: str) -> str:
    """The part every nginx instance shares: one worker, in the foreground, files under `tmp`."""
    return f"""\
worker_processes 1;
worker_rlimit_nofile {2 * MAX_CONNECTIONS};
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections {MAX_CONNECTIONS}; }}
"""


def _nginx_http_common(tmp: Path, name: str) -> str:
    # The temp paths default to the system prefix, which a non-packaged nginx may not be able to
    # write; everything this instance writes stays under `tmp`.
    return f"""\
    access_log off;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/{name}-client-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
"""


def nginx_backend_conf(
    tmp: Path, ports: Sequence[int], bodies: Sequence[str], static_dir: Path
) -> str:
    """One nginx, one worker, one server block per backend port answering its fixed JSON body;
    `/1mb` serves the 1 MiB file in `static_dir`."""
    servers = "".join(
        f"""\
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{body}'; }}
        location = {ONE_MB_PATH} {{ root {static_dir}; default_type application/octet-stream; }}
    }}
"""
        for port, body in zip(ports, bodies, strict=True)
    )
    return (
        _nginx_main(tmp, "backend")
        + "http {\n"
        + _nginx_http_common(tmp, "backend")
        + "    sendfile on;\n"
        + servers
        + "}\n"
    )


def nginx_proxy_conf(tmp: Path, port: int, backend_ports: Sequence[int], cookie: str) -> str:
    """nginx as the sticky proxy, the way ingress-nginx could do it without Lua.

    A client without the cookie gets a fresh random key ($request_id) that both picks the
    upstream and is sent back in Set-Cookie; with the cookie, its value is the hash key.
    """
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in backend_ports)
    return (
        _nginx_main(tmp, "nginx-proxy")
        + "http {\n"
        + _nginx_http_common(tmp, "nginx-proxy")
        + f"""\
    map $cookie_{cookie} $sticky_key {{
        "" $request_id;
        default $cookie_{cookie};
    }}
    map $cookie_{cookie} $sticky_set_cookie {{
        "" "{cookie}=$request_id; Path=/; HttpOnly";
        default "";
    }}
    upstream backends {{
        hash $sticky_key consistent;
{servers}        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests {KEEPALIVE_REQUESTS};
        keepalive_timeout 120s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Stream, as sticky-proxy does and as ingress-nginx does by default (proxy-buffering:
            # off), but read 64 KiB at a time: with ingress-nginx's 4k proxy-buffer-size nginx
            # moves a 1 MiB body in 256 reads and its 1mb throughput drops to about a third.
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            add_header Set-Cookie $sticky_set_cookie;
        }}
    }}
}}
"""
    )


def haproxy_conf(tmp: Path, port: int, backend_ports: Sequence[int], cookie: str) -> str:
    """HAProxy with one thread, inserting its own affinity cookie (the server's name)."""
    servers = "".join(
        f"    server b{i} 127.0.0.1:{p} cookie b{i}\n" for i, p in enumerate(backend_ports)
    )
    return f"""\
global
    nbthread 1
    maxconn {MAX_CONNECTIONS}
    pidfile {tmp}/haproxy.pid

defaults
    mode http
    maxconn {MAX_CONNECTIONS}
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    http-reuse always

frontend proxy
    bind 127.0.0.1:{port}
    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
    http-request set-header X-Request-ID %[unique-id]
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Forwarded-Proto http
    default_backend backends

backend backends
    balance random
    cookie {cookie} insert indirect nocache
{servers}"""
