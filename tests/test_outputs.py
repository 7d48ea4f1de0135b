"""harrier.outputs: checks before work, atomic writes, rescue when the write fails after the work."""

from __future__ import annotations

import pytest

from harrier.outputs import OutputError, atomic_file, check_dir, check_file, write_or_rescue


def test_check_file_refuses_directory_missing_parent_and_file_parent(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        check_file(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        check_file(tmp_path / "no" / "x.npy")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_file(tmp_path / "f" / "x.npy")
    assert check_file(tmp_path / "ok.npy") == tmp_path / "ok.npy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe leaves nothing


@pytest.mark.parametrize("target", ["/proc/x.npy", "/sys/x.jsonl"])
def test_check_file_refuses_pseudo_filesystems(target):
    with pytest.raises(OutputError, match="cannot create files"):
        check_file(target)


def test_check_dir_creates_and_refuses_files(tmp_path):
    assert check_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_dir(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file"):
        check_dir(tmp_path / "f" / "sub")


def test_atomic_file_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    with atomic_file(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_write_or_rescue_saves_beside_the_target(tmp_path):
    target = tmp_path / "out.npy"
    calls = []

    def write(path):
        calls.append(path)
        if path == target:
            raise OSError(28, "No space left on device")
        path.write_text("result")

    with pytest.raises(OutputError, match="No space left on device.*saved to .*out.rescued.npy"):
        write_or_rescue(target, write)
    assert (tmp_path / "out.rescued.npy").read_text() == "result"
    assert calls == [target, tmp_path / "out.rescued.npy"]
