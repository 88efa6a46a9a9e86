"""Sources: where the proxy learns its routes (static URLs, manifests, the Kubernetes API)."""
