"""Reading Kubernetes objects from real files: directories, kubectl output, and every complaint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.control.sources.manifest_files import (
    ManifestFileError,
    Origin,
    manifest_files,
    parse_files,
    read_files,
)

SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default}\n"


def objects_in(*paths: Path) -> list[tuple[str, str]]:
    """(kind, name) of every object read from `paths`, in order."""
    loaded = parse_files(read_files(manifest_files(paths)))
    return [(o.obj["kind"], o.obj["metadata"]["name"]) for o in loaded]


def complaint(*paths: Path) -> str:
    with pytest.raises(ManifestFileError) as raised:
        parse_files(read_files(manifest_files(paths)))
    return str(raised.value)


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text(SERVICE % "bz")
    (tmp_path / "b" / "a.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ba"}})
    )
    (tmp_path / "c.yaml").write_text(SERVICE % "c")
    (tmp_path / "a.yaml").write_text(SERVICE % "a")
    (tmp_path / "notes.txt").write_text("not: a manifest\n")
    assert objects_in(tmp_path) == [
        ("Service", "a"),
        ("Service", "ba"),
        ("Service", "bz"),
        ("Service", "c"),
    ]


def test_hidden_names_are_skipped_so_a_configmap_volume_reads_once(tmp_path: Path) -> None:
    # The layout the kubelet writes: real files in a timestamped dot directory, `..data` pointing
    # at it, and each key a symlink through `..data`.
    stamped = tmp_path / "..2024_01_01_00_00_00.000000001"
    stamped.mkdir()
    (stamped / "web.yaml").write_text(SERVICE % "web")
    (tmp_path / "..data").symlink_to(stamped.name)
    (tmp_path / "web.yaml").symlink_to("..data/web.yaml")
    (tmp_path / ".web.yaml.swp").write_text("junk: [")
    assert objects_in(tmp_path) == [("Service", "web")]


def test_a_file_given_twice_is_read_once_and_paths_keep_their_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SERVICE % "b")
    (tmp_path / "a.yaml").write_text(SERVICE % "a")
    assert objects_in(tmp_path / "b.yaml", tmp_path) == [("Service", "b"), ("Service", "a")]


def test_symlinked_directory_loops_end(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE % "a")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert objects_in(tmp_path) == [("Service", "a")]


def test_kubectl_list_output_is_flattened_and_empty_documents_skipped(tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(
        "# kubectl get svc,ingress -o yaml\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: List\n"
        "items:\n"
        "- apiVersion: v1\n"
        "  kind: Service\n"
        "  metadata: {name: one}\n"
        "- apiVersion: networking.k8s.io/v1\n"
        "  kind: Ingress\n"
        "  metadata: {name: two}\n"
        "metadata: {resourceVersion: ''}\n"
        "---\n"
        "---\n"
        "# nothing here\n"
        "---\n" + SERVICE % "three"
    )
    loaded = parse_files(read_files([manifest]))
    assert [(o.obj["kind"], o.obj["metadata"]["name"]) for o in loaded] == [
        ("Service", "one"),
        ("Ingress", "two"),
        ("Service", "three"),
    ]
    # Each object remembers the line its List item or document starts on.
    assert [o.origin for o in loaded] == [
        Origin(manifest, 6),
        Origin(manifest, 9),
        Origin(manifest, 17),
    ]


def test_json_list_as_kubectl_writes_it(tmp_path: Path) -> None:
    manifest = tmp_path / "all.json"
    items = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"}}]
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=4))
    assert objects_in(manifest) == [("Service", "j")]


def test_an_empty_directory_and_an_empty_file_hold_no_objects(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert objects_in(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "kind: Service\nmetadata: {name: [\n", "bad.yaml:3: invalid YAML: "),
        ("bad.yaml", "kind: Service\n  name: x\n", "bad.yaml:2: invalid YAML: "),
        (
            "list.yaml",
            SERVICE % "ok" + "---\n- a\n- b\n",
            "list.yaml:5: document 2 is a list, not a Kubernetes object",
        ),
        ("str.yaml", "hello\n", "str.yaml:1: document 1 is a string, not a Kubernetes object"),
        (
            "items.yaml",
            "kind: List\nitems:\n- kind: Service\n- 42\n",
            "items.yaml:4: List: items[1] is a number, not a Kubernetes object",
        ),
        ("items.yaml", "kind: List\nitems: {}\n", "items.yaml:1: List: items is a dict, not"),
        ("nokind.yaml", "apiVersion: v1\nmetadata: {}\n", "nokind.yaml:1: an object without a"),
        (
            "nokind.yaml",
            "kind: List\nitems:\n- kind: Service\n- {kind: ''}\n",
            "nokind.yaml:4: an object without a kind",
        ),
        ("bad.json", '{"kind": "Service",\n}', "bad.json:2: invalid JSON: "),
        ("bad.json", "[]", "bad.json: document 1 is a list, not a Kubernetes object"),
        ("bin.yaml", b"\xff\xfe\xfd", "bin.yaml: invalid YAML: "),
    ],
)
def test_complaints_name_the_file_line_and_problem(
    tmp_path: Path, name: str, text: str | bytes, message: str
) -> None:
    manifest = tmp_path / name
    if isinstance(text, bytes):
        manifest.write_bytes(text)
    else:
        manifest.write_text(text)
    assert complaint(manifest).startswith(f"{tmp_path}/{message}")
    assert "\n" not in complaint(manifest)


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    assert complaint(tmp_path / "nope.yaml") == f"{tmp_path}/nope.yaml: No such file or directory"
