"""The annotation coverage table (docs/ingress-nginx-compat.md, "Annotation coverage"): the code's
verdicts, what the parser honours, what `routes` prints and the README's table agree."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.annotations import _HONOURED, PREFIX, parse_annotations
from proxy.control.translate.coverage import ANNOTATIONS, Support, verdict
from proxy.control.translate.describe import describe
from proxy.core.model import UpstreamPolicy

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[a-z0-9-]+)` \| (?P<support>[^|]+) \| (?P<why>[^|]*) \|$")


def test_what_the_parser_honours_is_what_the_table_calls_honoured() -> None:
    honoured = {name for name, (s, _) in ANNOTATIONS.items() if s is Support.HONOURED}
    different = {name for name, (s, _) in ANNOTATIONS.items() if s is Support.DIFFERENT}
    assert honoured <= _HONOURED
    assert honoured | different >= _HONOURED


def test_the_table_lists_ingress_nginx_s_whole_user_guide() -> None:
    # every name the user guide's annotations page mentions, and allowlist-source-range and
    # limit-allowlist, which it does not, though ingress-nginx reads them before their older
    # names whitelist-source-range and limit-whitelist, and disable-proxy-intercept-errors,
    # which it does not either, though ingress-nginx reads it
    assert len(ANNOTATIONS) == 133
    assert verdict("made-up") == (Support.NOT_SUPPORTED, "not an ingress-nginx annotation")


def test_the_readme_table_is_the_code_s() -> None:
    table = README.read_text().split("<!-- annotation coverage:")[1].split("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        if match := ROW.match(line):
            rows[match["name"]] = (match["support"].strip(), match["why"].strip())
    assert rows == {name: (s.value, why) for name, (s, why) in ANNOTATIONS.items()}


def test_warnings_say_why_an_annotation_does_nothing() -> None:
    settings = parse_annotations(
        {
            f"{PREFIX}proxy-buffering": "on",
            f"{PREFIX}auth-snippet": "proxy_set_header X 1;",
            f"{PREFIX}preserve-trailing-slash": "true",
            f"{PREFIX}affinity": "cookie",
        },
        UpstreamPolicy(),
    )
    assert settings.warnings == (
        f"{PREFIX}auth-snippet is not supported (refused, there is no nginx here; move what it"
        " does into annotations or the application); ignored",
        f"{PREFIX}proxy-buffering has no effect here (the proxy streams bodies both ways and"
        " has no nginx buffers to size); ignored",
    )  # (a difference is told by `routes`, not warned about)


def test_routes_reports_every_annotation_of_each_ingress() -> None:
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "shop",
            "namespace": "shop",
            "annotations": {
                f"{PREFIX}affinity": "cookie",
                f"{PREFIX}configuration-snippet": "more_set_headers x: y;",
                f"{PREFIX}auth-tls-verify-depth": "2",
                "kubernetes.io/ingress.class": "sticky",
            },
        },
        "spec": {"rules": [{"host": "shop.test", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }  # fmt: skip
    text = describe(translate([ingress], TranslateOptions()))
    section = text.split("annotations of Ingress shop/shop\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        f"  {PREFIX}affinity               honoured: cookie, the only type",
        f"  {PREFIX}auth-tls-verify-depth  not supported: read, but Python's ssl cannot set"
        " the verification depth: any chain to the CA is taken",
        f"  {PREFIX}configuration-snippet  not supported: refused, there is no nginx"
        " here; move what it does into annotations or the application",
    ]
