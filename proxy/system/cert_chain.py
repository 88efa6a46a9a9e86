"""Certificates held in memory, loaded into an SSLContext without temporary files.

Python's ssl module loads a certificate chain and its key only from files, and the proxy holds
them as bytes (Ingress TLS Secrets, kubeconfig `*-data`, exec plugin credentials). On Linux the
bytes go into an anonymous in-memory file (memfd) that OpenSSL opens by its /proc/self/fd path:
no filesystem is written, so a read-only root with no writable /tmp is no obstacle, and a private
key never reaches a disk. Elsewhere (no memfd_create, or no /proc) they pass through a private
temporary directory, gone before `load_cert_chain` returns.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

_PROC_FDS = Path("/proc/self/fd")


def ca_load_error(ca: bytes) -> str | None:
    """Why OpenSSL does not load these CA certificates (PEM), or None when it does: checked in a
    context of its own, without the system's CAs, so nothing is read from disk."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=ca.decode("latin-1"))
    except (ssl.SSLError, ValueError) as error:
        return str(error)
    return None


def load_cert_chain(context: ssl.SSLContext, chain: Path | bytes, key: Path | bytes) -> None:
    """`context.load_cert_chain` for PEM files or PEM bytes. ssl.SSLError: the PEM does not load;
    another OSError: a file cannot be read, or (off Linux) no temporary directory is usable."""
    with ExitStack() as stack:
        chain_path, key_path = (
            pem if isinstance(pem, Path) else stack.enter_context(_as_file(pem))
            for pem in (chain, key)
        )
        context.load_cert_chain(chain_path, key_path)


def load_verify_pem(context: ssl.SSLContext, pem: bytes) -> None:
    """`context.load_verify_locations` for PEM bytes that may hold CRLs as well as certificates
    (`cadata` takes certificates only). Raises as `load_cert_chain`."""
    with _as_file(pem) as path:
        context.load_verify_locations(cafile=path)


@contextmanager
def _as_file(data: bytes) -> Iterator[Path]:
    descriptor = _in_memory(data)
    if descriptor is not None:
        try:
            yield _PROC_FDS / str(descriptor)
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="sticky-proxy-pem-") as directory:
        path = Path(directory) / "pem"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(data)
        yield path


def _in_memory(data: bytes) -> int | None:
    """A memfd holding `data`, or None where there is none to be had (not Linux, no /proc,
    or a seccomp profile that refuses the call)."""
    if not hasattr(os, "memfd_create") or not _PROC_FDS.is_dir():
        return None
    try:
        descriptor = os.memfd_create("sticky-proxy-pem", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        with open(descriptor, "wb", closefd=False) as file:
            file.write(data)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor
