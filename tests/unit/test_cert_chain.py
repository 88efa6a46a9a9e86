"""PEM bytes into an SSLContext: through memory on Linux, a private temporary directory
elsewhere, and any failure one line."""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
from pathlib import Path

import pytest

from proxy.dataplane.tls_contexts import load_default_certificate
from proxy.system.cert_chain import load_cert_chain
from tests.certs import self_signed

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="memfd_create is Linux's")


def server_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@linux_only
def test_pem_bytes_load_through_memory_without_any_temporary_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "nowhere"))  # none to be had
    chain, key = self_signed("a.test")
    before = open_descriptors()
    for _ in range(3):
        load_cert_chain(server_context(), chain, key)
    assert open_descriptors() == before  # each memory file closed again


def test_files_and_bytes_mix_as_a_kubeconfig_gives_them(tmp_path: Path) -> None:
    chain, key = self_signed("a.test")
    (tmp_path / "client.crt").write_bytes(chain)
    load_cert_chain(server_context(), tmp_path / "client.crt", key)


@pytest.mark.parametrize("through_memory", [True, False], ids=["memfd", "temporary-directory"])
def test_pem_that_does_not_load_is_an_ssl_error(
    through_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not through_memory:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    chain, _ = self_signed("a.test")
    _, other_key = self_signed("a.test")
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):  # the bytes were read
        load_cert_chain(server_context(), chain, other_key)
    with pytest.raises(ssl.SSLError):
        load_cert_chain(server_context(), b"not a certificate", b"nor a key")


def test_without_memfd_the_pem_passes_through_a_private_directory_that_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    load_cert_chain(server_context(), *self_signed("a.test"))
    assert list(tmp_path.iterdir()) == []


def test_without_memfd_or_a_temporary_directory_a_default_certificate_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "nowhere"))
    chain, key = self_signed("a.test")
    (tmp_path / "tls.crt").write_bytes(chain)
    (tmp_path / "tls.key").write_bytes(key)
    with pytest.raises(ValueError, match=r"tls\.crt, .*tls\.key: cannot be loaded \(") as error:
        load_default_certificate(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    assert "\n" not in str(error.value)
