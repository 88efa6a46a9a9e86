"""Reading the objects (translate.world, with objects, fields, ingresses and services): what
cannot be used at all is a ManifestError that names the object and the field; Lists, other
kinds, other versions and repeats; how messages name an object; the options' own check."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.control.translate import ManifestError, TranslateOptions, object_ref, translate
from tests.unit.kube_fixtures import load, summary

# --- objects that cannot be used ---------------------------------------------------------------

_OBJECT_ERRORS = [
    "object 1: a list is not a Kubernetes object",
    "object nameless-kind: kind: missing",
    "Service default/no-api-version: apiVersion: missing",
    "Service shop/(no name): metadata.name: missing",
    "Service default/web: metadata.namespace: 5 is not a string",
    "Ingress shop/web: spec.rules: a mapping is not a list",
    "Ingress shop/web: spec.rules[0].http.paths[1].pathType: 'Foo' is not Exact, Prefix or"
    " ImplementationSpecific",
    "Ingress default/web: spec.rules[0].http.paths[0].pathType: missing",
    "Ingress default/web: spec.rules[0].http.paths[0].path: 'api' does not start with /",
    "Ingress default/web: spec.rules[0].http.paths[0].backend: needs a service or a resource",
    "Ingress default/web: spec.rules[0].http.paths[0].backend.service.port: needs exactly one"
    " of number and name",
    "Ingress default/web: spec.defaultBackend.service.port.number: 70000 is not a port",
    "Ingress default/web: spec.rules[0].host: 'bad_host.example.com' is not a host name",
    "Ingress default/web: metadata.annotations['nginx.ingress.kubernetes.io/server-alias']:"
    " a list is not a string",
    "Ingress default/web: metadata.creationTimestamp: 'yesterday' is not an RFC 3339 timestamp",
    "Service default/web: spec.ports[0].port: '80' is not an integer",
    "Service default/web: spec.ports[0].port: True is not an integer",
    "EndpointSlice default/web-abc: endpoints[0].conditions.ready: 'yes' is not true or false",
    "EndpointSlice default/web-abc: addressType: missing",
    "Endpoints default/web: subsets[0].addresses[0].ip: missing",
    "List (no name): items: a mapping is not a list",
]


@pytest.mark.parametrize(("index", "message"), list(enumerate(_OBJECT_ERRORS)))
def test_manifest_errors_name_the_object_and_field(index: int, message: str) -> None:
    document = load("manifest_errors")[index]
    legacy = isinstance(document, dict) and document.get("kind") == "Endpoints"
    api = "endpoints" if legacy else "endpointslices"
    with pytest.raises(ManifestError) as raised:
        translate([document], TranslateOptions(endpoints_api=api))  # type: ignore[arg-type]
    assert message in str(raised.value)
    if isinstance(document, dict):  # how the manifests source finds the file and line
        assert str(raised.value).startswith(object_ref(document) + ":")


def test_every_manifest_error_case_is_listed() -> None:
    assert len(load("manifest_errors")) == len(_OBJECT_ERRORS)


# --- the rest of the object handling -----------------------------------------------------------


def test_lists_other_kinds_versions_and_repeats() -> None:
    seed = load("seed")
    objects = [
        {"apiVersion": "v1", "kind": "List", "items": seed},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
        {
            "apiVersion": "extensions/v1beta1",
            "kind": "Ingress",
            "metadata": {"name": "old", "namespace": "legacy"},
        },
        seed[1],  # the Service once more
    ]
    snapshot = translate(objects, TranslateOptions())
    assert summary(snapshot) == summary(translate(seed, TranslateOptions()))
    assert snapshot.warnings == (
        "Ingress legacy/old: apiVersion extensions/v1beta1 is not supported; ignored",
        "Service default/sticky-d: given more than once; the last one is used",
    )


@pytest.mark.parametrize(
    ("obj", "ref"),
    [
        ({"kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"}}, "Ingress shop/web"),
        ({"kind": "Service", "metadata": {"name": "web"}}, "Service default/web"),
        ({"kind": "IngressClass", "metadata": {"name": "sticky"}}, "IngressClass sticky"),
        ({"kind": "Namespace", "metadata": {"name": "shop"}}, "Namespace shop"),
        ({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "b"}}, "ConfigMap b/a"),
        ({"metadata": "broken"}, "object (no name)"),
    ],
)
def test_object_ref(obj: dict[str, Any], ref: str) -> None:
    assert object_ref(obj) == ref


def test_options_check_the_endpoints_api() -> None:
    with pytest.raises(ValueError, match="endpointslices or endpoints"):
        TranslateOptions(endpoints_api="slices")  # type: ignore[arg-type]
