import os

import pytest

from interp.fileio import atomic_dir, write_json, write_text


def test_atomic_dir_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left behind
    assert oct(target.stat().st_mode & 0o777) == "0o755"


def test_write_text_replaces_whole_files(tmp_path):
    path = write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert path.read_text() == '{\n "x": 1\n}\n'
    write_text(path, "new")
    assert path.read_text() == "new" and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json"]
