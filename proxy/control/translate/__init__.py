"""Kubernetes objects → `Snapshot`, as docs/behaviour.md, "Ingress translation" describes.

Pure: plain dicts (parsed YAML/JSON, or API objects) in, an immutable snapshot out. An object
that cannot be used at all raises `ManifestError`; anything else ignored or questionable becomes
one line in `Snapshot.warnings`. The same objects always give an equal snapshot, in any order.

The steps, which `pipeline.translate` runs in order: read and type-check the objects (`world`,
reading through `objects`, `fields`, `ingresses` and `services`), parse each Ingress's
annotations (`annotations`, `proxy_ssl`, `basic_auth`) and resolve their upstream TLS and its
Secret (`upstream_tls`) and their basic authentication's Secret (`auth_secrets`), pick the
Ingresses of our class in ingress-nginx's processing order (`selection`), merge the affinity
settings of every Ingress sharing a backend (`backends`;
docs/ingress-nginx-compat.md, "Backend names"), resolve each backend's endpoints (`endpoints`),
then lay out the routes per host the way ingress-nginx lays out its nginx servers and locations
(`routes`). TLS (certificates for SNI,
redirects) is in `tls`. `describe` renders a snapshot as the text of `sticky-proxy routes`.

The entry points below are imported from this package; everything else from the module that
defines it. The modules inside import one another, never this package, so none is in a cycle.
"""

from proxy.control.translate.objects import KubeObject, ManifestError, object_ref
from proxy.control.translate.options import TranslateOptions
from proxy.control.translate.pipeline import translate

__all__ = ["KubeObject", "ManifestError", "TranslateOptions", "object_ref", "translate"]
