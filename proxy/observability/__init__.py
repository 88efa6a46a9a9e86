"""What the proxy tells about itself: Prometheus metrics, the access log, the upstream failure
log, session estimates, the status page and the admin listener."""
