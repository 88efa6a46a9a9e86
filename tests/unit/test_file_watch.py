"""ManifestWatch on real files: every way a manifest changes is seen, and nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.sources.file_watch import ManifestWatch
from proxy.sources.manifest_files import ManifestFileError


def texts(contents: object) -> dict[str, str]:
    assert isinstance(contents, tuple), "expected the files' bytes"
    return {path.name: data.decode() for path, data in contents}


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a.yaml").write_text("a: 1\n")
    return directory


def started(*paths: Path) -> ManifestWatch:
    watch = ManifestWatch(paths)
    assert watch.poll() is not None  # the first poll reads everything
    assert watch.poll() is None  # then nothing changed (the one re-read after a change)
    assert watch.poll() is None
    return watch


def test_first_poll_reads_then_quiet(manifests: Path) -> None:
    watch = ManifestWatch([manifests])
    assert texts(watch.poll()) == {"a.yaml": "a: 1\n"}
    assert watch.poll() is None


def test_in_place_edit(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "a.yaml").write_text("a: 22\n")
    assert texts(watch.poll()) == {"a.yaml": "a: 22\n"}
    assert watch.poll() is None


def test_atomic_replace_by_rename(manifests: Path) -> None:
    watch = started(manifests / "a.yaml")
    temporary = manifests / ".a.yaml.tmp"
    temporary.write_text("a: 2\n")
    os.replace(temporary, manifests / "a.yaml")
    assert texts(watch.poll()) == {"a.yaml": "a: 2\n"}


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
    assert texts(watch.poll()) == {"a.yaml": "a: 2\n"}


def test_files_added_and_removed_in_a_watched_directory(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "sub").mkdir()
    (manifests / "sub" / "b.yml").write_text("b: 1\n")
    assert texts(watch.poll()) == {"a.yaml": "a: 1\n", "b.yml": "b: 1\n"}
    assert watch.poll() is None
    (manifests / "a.yaml").unlink()
    assert texts(watch.poll()) == {"b.yml": "b: 1\n"}


def test_a_touch_or_an_identical_rewrite_is_not_a_change(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "a.yaml").touch()
    assert watch.poll() is None
    (manifests / "a.yaml").write_text("a: 1\n")
    assert watch.poll() is None


def test_other_files_do_not_count(manifests: Path) -> None:
    watch = started(manifests)
    (manifests / "README.txt").write_text("hello")
    (manifests / ".a.yaml.swp").write_text("x")
    assert watch.poll() is None


def test_a_rewrite_the_stat_cannot_see_is_caught_by_the_reread(manifests: Path) -> None:
    """Same size, same timestamp (a second write within one kernel clock tick)."""
    file = manifests / "a.yaml"
    watch = started(manifests)
    file.write_text("a: 3\n")
    first_write = os.stat(file)
    assert texts(watch.poll()) == {"a.yaml": "a: 3\n"}
    file.write_text("a: 4\n")
    os.utime(file, ns=(first_write.st_atime_ns, first_write.st_mtime_ns))
    assert texts(watch.poll()) == {"a.yaml": "a: 4\n"}


def test_an_unreadable_file_is_reported_once_per_change(manifests: Path) -> None:
    watch = started(manifests / "a.yaml")
    (manifests / "a.yaml").unlink()
    with pytest.raises(ManifestFileError, match=r"a\.yaml: No such file"):
        watch.poll()
    assert watch.poll() is None  # still missing: not a new failure
    assert watch.poll() is None
    (manifests / "a.yaml").write_text("a: 1\n")
    # Back with the bytes it had before: still news, the last poll was a failure.
    assert texts(watch.poll()) == {"a.yaml": "a: 1\n"}
