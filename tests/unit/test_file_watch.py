"""ManifestWatch on real files: every way a manifest changes is seen, and nothing else is.

`poll` is synchronous, so each test steps the watch by hand: a change is seen at one poll and
read at the next, once the files held still in between.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.control.sources.file_watch import ManifestWatch
from proxy.control.sources.manifest_files import ManifestFileError


def texts(contents: object) -> dict[str, str]:
    assert isinstance(contents, tuple), "expected the files' bytes"
    return {path.name: data.decode() for path, data in contents}


def settled(watch: ManifestWatch) -> dict[str, str]:
    """What the watch reads for a change: nothing at the poll that sees it, the bytes next."""
    assert watch.poll() is None
    return texts(watch.poll())


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a.yaml").write_text("a: 1\n")
    return directory


def started(*paths: Path) -> ManifestWatch:
    watch = ManifestWatch(paths)
    watch.read()
    for _ in range(3):
        assert watch.poll() is None
    return watch


def test_the_first_read_is_immediate_and_checked_once_more(manifests: Path) -> None:
    watch = ManifestWatch([manifests])
    assert texts(watch.read()) == {"a.yaml": "a: 1\n"}
    # A writer busy at startup would be caught here; nothing changed, so nothing new.
    assert watch.poll() is None
    (manifests / "a.yaml").write_text("a: 2\n")
    assert settled(watch) == {"a.yaml": "a: 2\n"}


def test_in_place_edit(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "a.yaml").write_text("a: 22\n")
    assert settled(watch) == {"a.yaml": "a: 22\n"}
    assert watch.poll() is None


def test_a_file_still_being_written_is_read_once_it_holds_still(manifests: Path) -> None:
    watch = started(manifests)
    file = manifests / "a.yaml"
    with file.open("w") as writer:  # truncated: an empty file is valid YAML with no objects
        writer.flush()
        assert watch.poll() is None
        writer.write("a: 1\nb: 2\n")
        writer.flush()
        assert watch.poll() is None  # changed again since the last poll: not yet
    assert texts(watch.poll()) == {"a.yaml": "a: 1\nb: 2\n"}


def test_atomic_replace_by_rename(manifests: Path) -> None:
    watch = started(manifests / "a.yaml")
    temporary = manifests / ".a.yaml.tmp"
    temporary.write_text("a: 2\n")
    os.replace(temporary, manifests / "a.yaml")
    assert settled(watch) == {"a.yaml": "a: 2\n"}


def test_a_rename_that_keeps_size_and_timestamp_is_seen_by_its_inode(manifests: Path) -> None:
    file = manifests / "a.yaml"
    watch = started(file)
    before = os.stat(file)
    temporary = manifests / ".a.yaml.tmp"
    temporary.write_text("a: 9\n")
    os.utime(temporary, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(temporary, file)
    assert settled(watch) == {"a.yaml": "a: 9\n"}


def test_configmap_symlink_swap(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    for stamp, text in (("..v1", "a: 1\n"), ("..v2", "a: 2\n")):
        (volume / stamp).mkdir()
        (volume / stamp / "a.yaml").write_text(text)
    (volume / "..data").symlink_to("..v1")
    (volume / "a.yaml").symlink_to("..data/a.yaml")
    watch = started(volume)
    # The kubelet's swap: a new `..data` link renamed over the old one.
    (volume / "..data_tmp").symlink_to("..v2")
    os.replace(volume / "..data_tmp", volume / "..data")
    assert settled(watch) == {"a.yaml": "a: 2\n"}


def test_files_added_and_removed_in_a_watched_directory(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "sub").mkdir()
    (manifests / "sub" / "b.yml").write_text("b: 1\n")
    assert settled(watch) == {"a.yaml": "a: 1\n", "b.yml": "b: 1\n"}
    (manifests / "a.yaml").unlink()
    assert settled(watch) == {"b.yml": "b: 1\n"}


def test_a_touch_or_an_identical_rewrite_is_not_a_change(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "a.yaml").touch()
    assert watch.poll() is None
    assert watch.poll() is None
    (manifests / "a.yaml").write_text("a: 1\n")
    assert watch.poll() is None
    assert watch.poll() is None


def test_other_files_do_not_count(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "README.txt").write_text("hello")
    (manifests / ".a.yaml.swp").write_text("x")
    assert watch.poll() is None
    assert watch.poll() is None


def test_an_unreadable_file_is_reported_once_per_change(manifests: Path) -> None:
    watch = started(manifests / "a.yaml")
    (manifests / "a.yaml").unlink()
    assert watch.poll() is None
    with pytest.raises(ManifestFileError, match=r"a\.yaml: No such file"):
        watch.poll()
    assert watch.poll() is None  # still missing: not a new failure
    assert watch.poll() is None
    (manifests / "a.yaml").write_text("a: 1\n")
    # Back with the bytes it had before: still news, the last read was a failure.
    assert settled(watch) == {"a.yaml": "a: 1\n"}
