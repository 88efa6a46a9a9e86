"""The data plane: client connections, their requests and the upstream connections."""
