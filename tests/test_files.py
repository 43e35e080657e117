"""The one atomic-write helper and the one exists/overwrite check."""

import pytest

from xlandcover._files import atomic_write, check_overwrite
from xlandcover.errors import OutputExistsError


def test_atomic_write_replaces_the_file_whole_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "sub" / "model.xlc"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"first"))
    assert target.read_bytes() == b"first"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["model.xlc"]


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "sample.gpkg"
    target.write_bytes(b"old")
    seen = []

    def fails(tmp):
        seen.append(tmp)
        assert tmp.suffix == ".gpkg" and tmp.parent == tmp_path  # same folder, same suffix
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old"
    assert not seen[0].exists() and [p.name for p in tmp_path.iterdir()] == ["sample.gpkg"]


def test_check_overwrite_refuses_what_exists_unless_asked(tmp_path):
    path = tmp_path / "x.tif"
    check_overwrite(path, overwrite=False)  # nothing there
    path.write_bytes(b"")
    with pytest.raises(OutputExistsError, match=r"x\.tif exists; pass overwrite=True"):
        check_overwrite(path, overwrite=False)
    with pytest.raises(FileExistsError, match="holds chips; pass overwrite"):
        check_overwrite(path, overwrite=False, exists="the folder holds chips")
    check_overwrite(path, overwrite=True)
