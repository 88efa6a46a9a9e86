"""The integration tests' fixtures (a proxy on manifest files, pods on loopback), for the
Gateway API tests."""

from tests.integration.conftest import manifest_proxy, pods

__all__ = ["manifest_proxy", "pods"]
