from pathlib import Path

import pytest

import phoenix.files
from phoenix.files import write_atomically


def test_text_and_bytes_replace_the_file_and_leave_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text("old")
    write_atomically(path, "new text")
    assert path.read_text() == "new text"
    write_atomically(path, b"\x00\x01bytes")
    assert path.read_bytes() == b"\x00\x01bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt"]


def test_a_failed_rename_keeps_the_old_content_and_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(b"old cache")

    def refuse(src: Path, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(phoenix.files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, b"new cache")
    assert path.read_bytes() == b"old cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.cache"]
