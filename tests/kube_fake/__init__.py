"""A fake Kubernetes API server for the tests: real aiohttp over real TLS, speaking the wire format
of shared/k8s-api/README.md (b), and able to produce its edge cases (c) on demand."""
