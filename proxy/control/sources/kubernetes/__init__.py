"""The `--kubernetes` source: Ingresses, Services and endpoints, and the Gateway API kinds where
the cluster has them, listed and watched from the API.

A thin client on aiohttp, the way kopf talks to the API server (why no client library:
docs/architecture.md, "Our own Kubernetes API client"): `config` finds the cluster and
the credentials, `auth` turns them into
request headers and TLS, `client` speaks the list/watch wire format, `reflector` keeps one
resource's objects current through expired versions and dropped connections, `source` rebuilds
the routes from every reflector's objects, `status` writes the address into Ingress status, and
`gateway_status` (what to write) with `gateway_writer` (writing it) the status of our
GatewayClasses, Gateways and HTTPRoutes.
"""
