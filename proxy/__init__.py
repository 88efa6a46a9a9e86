"""sticky-proxy: cookie-based sticky sessions for Kubernetes workloads, the ingress-nginx way."""
