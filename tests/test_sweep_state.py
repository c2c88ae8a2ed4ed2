"""Repair of Tune state files that a driver crash cut off (sweeper.sweep.repair_tune_state)."""

from __future__ import annotations

import json

import pytest
from ray import cloudpickle

from sweeper.errors import UserError
from sweeper.sweep import repair_tune_state


def test_truncated_state_is_restored_from_the_drivers_staging_copy(tmp_path, monkeypatch):
    sweep = tmp_path / "sweeps" / "s1"
    sweep.mkdir(parents=True)
    (sweep / "experiment_state-x.json").write_text(json.dumps({"trial_data": []}))
    (sweep / "searcher-state-x.pkl").write_bytes(b"")  # cut off mid-copy by a SIGKILL
    staging = tmp_path / "ray" / "session_1" / "artifacts" / "t0" / "s1" / "driver_artifacts"
    staging.mkdir(parents=True)
    (staging / "searcher-state-x.pkl").write_bytes(cloudpickle.dumps({"ok": 1}))
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where Ray keeps session folders
    assert repair_tune_state(sweep) == ["searcher-state-x.pkl"]
    assert cloudpickle.loads((sweep / "searcher-state-x.pkl").read_bytes()) == {"ok": 1}
    assert repair_tune_state(sweep) == []  # intact state is left alone


def test_no_intact_copy_is_one_clear_error(tmp_path, monkeypatch):
    sweep = tmp_path / "s2"
    sweep.mkdir()
    (sweep / "search_gen_state-x.json").write_bytes(b"\x80\x04trunc")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(UserError, match="cut off when the driver died") as e:
        repair_tune_state(sweep)
    assert "\n" not in str(e.value)
