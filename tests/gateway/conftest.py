"""The integration tests' proxy fixture, for the conformance port."""

from tests.integration.conftest import manifest_proxy

__all__ = ["manifest_proxy"]
