"""``output.dir``: one run at a time (the lock), never over an earlier run unless told, and the run's own exit
status through ``rft train --gpus N``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from rft.cli import main
from rft.train.output_dir import (
    LOCK, OutputDirError, RunLock, check_earlier_run, launched_exit_status, write_status,
)

RECIPE = {
    "model": {"tiny": {"family": "qwen2_5_vl"}, "min_pixels": 3136, "max_pixels": 12544},
    "data": {"datasets": [{"name": "cls", "kind": "synthetic_shapes", "num_samples": 8}]},
    "rewards": [{"name": "classification_accuracy"}],
    "grpo": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8, "max_steps": 1},
}


def earlier_run(out):
    """The files of a finished run, and a snapshot (content, modification time) of each."""
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (out / "final").mkdir()
    (out / "final" / "model.safetensors").write_bytes(b"weights")
    for name in ("metrics.json", "recipe.yaml"):
        (out / name).write_text(f"earlier {name}")
    return snapshot(out)


def snapshot(out):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}


def rft_train(tmp_path, capsys, *args, **recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, **recipe, "output": {"dir": str(tmp_path / "out"), "report_to": []}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(path), *args])
    return exit_.value.code, capsys.readouterr().err


def test_a_second_run_into_an_earlier_runs_folder_is_refused(tmp_path, capsys):
    """It deleted the earlier run's checkpoints and overwrote final/, metrics.json and recipe.yaml, exit 0."""
    before = earlier_run(tmp_path / "out")
    code, err = rft_train(tmp_path, capsys)
    assert code == 2 and "Traceback" not in err
    assert (f"output.dir {tmp_path / 'out'} holds an earlier run (checkpoint-2, recipe.yaml, metrics.json, final); "
            "rft train does not write over it: continue it with --resume latest, or write this run elsewhere "
            "(--set output.dir=...), or replace it with --overwrite") in err
    assert snapshot(tmp_path / "out") == before
    code, err = rft_train(tmp_path, capsys, "--resume", "latest", "--overwrite")
    assert code == 2 and "choose one" in err


def test_without_a_checkpoint_resume_is_not_offered(tmp_path):
    (tmp_path / "recipe.yaml").write_text("x")
    with pytest.raises(OutputDirError) as err:
        check_earlier_run(tmp_path, None, False)
    assert "--resume" not in str(err.value) and "--overwrite" in str(err.value)
    (tmp_path / "recipe.yaml").unlink()
    (tmp_path / "tiny_model").mkdir()  # caches are no run
    (tmp_path / "eval").mkdir()
    check_earlier_run(tmp_path, None, False)


def test_a_run_that_fails_at_start_up_writes_nothing_over_the_earlier_run(tmp_path, capsys):
    """Even with --overwrite, the earlier run's files go only once the new run has loaded its model and data."""
    before = earlier_run(tmp_path / "out")
    missing = {"datasets": [{"name": "coco", "kind": "coco", "path": str(tmp_path / "absent.json")}]}
    code, err = rft_train(tmp_path, capsys, "--overwrite", data=missing,
                          rewards=[{"name": "detection_iou"}])
    assert code == 2 and "absent.json: file not found" in err and "Traceback" not in err
    assert {p: v for p, v in snapshot(tmp_path / "out").items() if p.parent.name != "tiny_model"} == before
    assert not (tmp_path / "out" / LOCK).exists()


def test_the_lock_names_the_run_holding_the_folder(tmp_path, capsys):
    """Two runs started into one output.dir mixed their files; the second stops at once, naming the first."""
    (tmp_path / "out").mkdir()
    holder = RunLock(tmp_path / "out").acquire()
    try:
        code, err = rft_train(tmp_path, capsys)
        assert code == 2 and "Traceback" not in err
        assert f"output.dir {tmp_path / 'out'} is in use by another rft train: process {os.getpid()}" in err
        with pytest.raises(OutputDirError, match=f"process {os.getpid()}"):
            RunLock(tmp_path / "out").check_free()
    finally:
        holder.release()
    assert not (tmp_path / "out" / LOCK).exists()
    RunLock(tmp_path / "out").check_free()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    script = (f"import os, signal, sys; sys.path.insert(0, {os.getcwd()!r}); from rft.train.output_dir import RunLock; "
              f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL and "locked" in done.stdout, done.stderr
    pid = json.loads((tmp_path / LOCK).read_text())["pid"]
    RunLock(tmp_path).check_free()  # the kernel dropped the dead process's lock
    with caplog.at_level("WARNING"):
        lock = RunLock(tmp_path).acquire()
    assert f"was left by process {pid}, which is no longer running: taking it over" in caplog.text
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()


def test_the_launcher_reports_the_runs_own_exit_status(tmp_path):
    """torchrun exits 1 whatever its processes' status: rft train --gpus N reads the run's run_status.json."""
    started = time.time()
    assert launched_exit_status(tmp_path, started, 1) == 1  # no status written
    write_status(tmp_path, "interrupted", 75, 5)
    assert launched_exit_status(tmp_path, started - 1, 1) == 75
    assert launched_exit_status(tmp_path, started - 1, 0) == 0
    assert launched_exit_status(tmp_path, time.time() + 10, 1) == 1  # a status from an earlier run
