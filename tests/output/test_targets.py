"""The guards around every writer: records by output kind."""

import json

import pytest

from xlandcover.errors import OutputExistsError, OverwriteRefusedError
from xlandcover.output import _targets
from xlandcover.output._targets import check_target, output_record


def test_a_new_output_kind_is_recognised_for_overwrite(tmp_path, monkeypatch):
    monkeypatch.setattr(_targets, "RECORDS", dict(_targets.RECORDS))

    def read(path):
        try:
            return json.loads(path.read_text()).get(_targets.MARKER)
        except (OSError, ValueError):
            return None

    _targets.register_output_kind("json", read)
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_text(json.dumps({_targets.MARKER: {"kind": "labels"}}))
    theirs.write_text("{}")
    assert output_record(ours, "json") == {"kind": "labels"}
    with pytest.raises(OutputExistsError):
        check_target(ours, overwrite=False, kind="json")
    check_target(ours, overwrite=True, kind="json")  # an xlandcover output: replaced
    with pytest.raises(OverwriteRefusedError, match="not an xlandcover json output"):
        check_target(theirs, overwrite=True, kind="json")
