"""The YAML fixtures of tests/fixtures/translate, read as the manifests source would read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.control.translate import TranslateOptions, translate
from proxy.core.routing import Snapshot

FIXTURES = Path(__file__).parent.parent / "fixtures" / "translate"


def load(name: str) -> list[Any]:
    with (FIXTURES / f"{name}.yaml").open() as file:
        return [document for document in yaml.safe_load_all(file) if document is not None]


def snapshot_of(name: str, **options: Any) -> Snapshot:
    return translate(load(name), TranslateOptions(**options))
