"""A run's ``output.dir``: one run at a time, never over an earlier run unless told, and how the run ended.

- :class:`RunLock`: ``rft.lock`` holds the process id of the run writing there; a second run stops at
  once, naming it. The lock goes when that process ends, however it ends.
- :func:`check_earlier_run`: an ``output.dir`` holding an earlier run is refused unless the new run
  continues it (``--resume``) or replaces it (``--overwrite``, which deletes its outputs only once
  the new run has loaded its model and data: a run that fails at start-up changes nothing there).
- :func:`write_status`: ``run_status.json`` says how the run ended and with which exit status (read by
  ``rft train --gpus N``, whose launcher would otherwise only see torchrun's 1).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from rft.errors import EXIT_ERROR, RftError

log = logging.getLogger(__name__)

LOCK = "rft.lock"
STATUS = "run_status.json"
RUN_OUTPUTS = ("recipe.yaml", "metrics.json", "reward_curve.png", "failures.jsonl", "final", "warmed_up", "runs",
               STATUS, ".incomplete")
"""What a run writes to ``output.dir`` besides its ``checkpoint-N`` folders (caches such as ``tiny_model``
and ``data`` are not a run's outputs: they are reused)."""


class OutputDirError(RftError):
    """``output.dir`` is in use by another run, or holds an earlier run the new one would write over."""


def earlier_run(out: Path) -> list[str]:
    """The outputs of an earlier run in ``out`` (checkpoints first), or []."""
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*") if p.is_dir())
    return checkpoints + [name for name in RUN_OUTPUTS if (out / name).exists()]


def check_earlier_run(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to start a run over an earlier one in ``out`` unless it resumes it or ``overwrite`` is given."""
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite: choose one (continue the earlier run, or replace it)")
    found = earlier_run(out)
    if not found or resume or overwrite:
        return
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    has_checkpoint = any(name.startswith("checkpoint-") for name in found)
    options = ["continue it with --resume latest"] if has_checkpoint else []
    options += ["write this run elsewhere (--set output.dir=...)", "replace it with --overwrite (its outputs are deleted)"]
    raise OutputDirError(f"output.dir {out} holds an earlier run ({shown}); rft train does not write over it: "
                         + ", or ".join(options))


def clear_earlier_run(out: Path) -> None:
    """Delete an earlier run's outputs from ``out`` (``--overwrite``); caches stay."""
    for path in [*(p for p in out.glob("checkpoint-*") if p.is_dir()), *(out / name for name in RUN_OUTPUTS)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class RunLock:
    """``output.dir/rft.lock``: a file holding the process id (host, start time, command) of the run writing
    there, locked with ``flock`` while that process lives. The kernel drops the lock when the process ends,
    however it ends (SIGKILL included): a lock file left behind is free, and the next run takes it over."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputDirError(self._in_use(_read(self.path))) from None
            except OSError as exc:  # a file system without flock (some network mounts): no lock, said so
                log.warning("%s: cannot lock it on this file system (%s): a second run into this output.dir would "
                            "not be stopped", self.path, exc.strerror)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and lock: try the new one
                break
            os.close(fd)
        left = _read(self.path)
        if left.get("pid"):
            log.warning("%s was left by process %s, which is no longer running: taking it over", self.path, left["pid"])
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return self

    def check_free(self) -> None:
        """Raise (naming the holder) when a running process holds the lock; take nothing."""
        if not self.path.is_file():
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirError(self._in_use(_read(self.path))) from None
        except OSError:  # no flock on this file system: the run itself says so
            pass
        finally:
            os.close(fd)

    def _in_use(self, holder: dict) -> str:
        return (f"output.dir {self.path.parent} is in use by another rft train: process {holder.get('pid', '?')}, "
                f"started {holder.get('started', 'just now')} ({holder.get('command', '?')}); wait for it to end, or "
                "write this run elsewhere (--set output.dir=...)")

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a run waiting for it then locks a new file
        os.close(self.fd)
        self.fd = None


def _read(path: Path) -> dict:
    """A lock file's record; {} when it is missing, empty (being written) or not valid JSON."""
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_status(out: Path, status: str, exit_status: int, step: int | None = None, message: str = "") -> None:
    """``run_status.json``: how the run ended (``finished``, ``interrupted``, ``stopped``, ``failed``)."""
    record = {"status": status, "exit_status": exit_status, "step": step, "message": message,
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / STATUS).write_text(json.dumps(record, indent=1) + "\n")


def launched_exit_status(out: Path, started: float, returncode: int) -> int:
    """The exit status of ``rft train --gpus N``: the run's own (from ``run_status.json``, when written after
    ``started``) where the launcher (torchrun: 1 for any failure) reports a failure, else ``returncode``."""
    path = out / STATUS
    if returncode == 0 or not path.is_file() or path.stat().st_mtime < started:
        return returncode
    try:
        return int(json.loads(path.read_text())["exit_status"]) or EXIT_ERROR
    except (ValueError, KeyError, TypeError):
        return returncode


def check_before_launch(out: Path, resume: str | None, overwrite: bool) -> None:
    """What ``rft train --gpus N`` checks before starting its processes (they check again, under the lock):
    an earlier run in ``out``, and a live process holding its lock."""
    check_earlier_run(out, resume, overwrite)
    RunLock(out).check_free()


def claim_output_dir(out: Path, resume: str | None, overwrite: bool, is_main: bool) -> RunLock | None:
    """The lock on ``out`` (held by the main process), after checking for an earlier run there. Every process
    calls it (a collective): when the main process cannot claim ``out``, all of them stop."""
    from rft.processes import summed_over_processes

    lock, problem = None, None
    if is_main:
        try:
            lock = RunLock(out).acquire()
            check_earlier_run(out, resume, overwrite)
        except OutputDirError as exc:
            problem = exc
            if lock is not None:
                lock.release()
                lock = None
    (failed,) = summed_over_processes(int(problem is not None))
    if problem is not None:
        raise problem
    if failed:
        raise OutputDirError(f"output.dir {out}: the main process could not start the run (its message says why)")
    return lock
