"""A fake Kubernetes API server for the tests: real aiohttp over real TLS, speaking the wire format
of the Kubernetes API, and able to produce on demand the edge cases a real server or network does.
"""
