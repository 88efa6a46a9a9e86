"""The control plane: sources of Kubernetes objects, their translation into routing snapshots,
and the publisher that swaps each new snapshot in."""
