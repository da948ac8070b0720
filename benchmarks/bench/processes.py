"""Child processes, each started by a small launcher: output, wall time, CPU, peak RSS."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CONFIG_PREFIXES, BenchmarkError


@dataclass
class Proc:
    """One finished child process: its output, wall time and peak RSS (from wait4)."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    wall: float  # seconds from spawn to exit
    maxrss_kib: int  # ru_maxrss of exactly this child (KiB on Linux)
    cpu: float  # user + system CPU seconds of this child (wait4)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, KiB)

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            raise BenchmarkError(
                f"{shlex.join(self.argv[2:])}: stdout is not JSON (exit {self.exit_code}): "
                f"{self.stdout[:300]!r} / stderr {self.stderr[-500:]!r}"
            ) from None

    def check(self, *codes: int) -> Proc:
        if self.exit_code not in (codes or (0,)):
            raise BenchmarkError(
                f"{shlex.join(self.argv[2:])} exited {self.exit_code}: {self.stderr[-1500:]}"
            )
        return self


# The measured command is started by this small launcher, never by the harness itself.
# Linux carries a process's peak RSS across fork and exec: a child forked from a process
# with 400 MiB resident reports ru_maxrss >= 400 MiB from wait4 even if it never used that
# much itself (the harness holds the stand-in's tokens, so it grows). The launcher is a
# fresh `python -I -S` (about 10 MiB) whose own peak is below any command measured here; it
# forks the command, samples its VmRSS, reaps it with wait4 and reports that child's own
# rusage and wall time (measured around spawn and exit, without the launcher's start-up).
LAUNCHER = """
import json, os, subprocess, sys, threading, time
result_path, interval, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
samples, done = [], threading.Event()
started = time.perf_counter()
child = subprocess.Popen(argv)
def sample():
    path = "/proc/%d/status" % child.pid
    while not done.wait(interval):
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - started, int(line.split()[1])))
                        break
        except (OSError, ValueError):
            pass
if interval > 0:
    threading.Thread(target=sample, daemon=True).start()
os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
wall = time.perf_counter() - started
done.set()
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(result_path, "w") as out:
    json.dump({"exit": child.returncode, "wall": wall, "maxrss": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime, "samples": samples}, out)
"""


def run_process(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin_path: Path | None = None,
    timeout: float = 600.0,
    sample_rss: bool = False,
    sample_interval: float = 0.25,
) -> Proc:
    """Run a command to completion: its output, wall time, CPU and peak RSS (os.wait4).

    No pipes: output goes to temporary files, so a chatty command can never block. The
    launcher (see LAUNCHER) runs in a session of its own; on a timeout or an interrupt the
    whole session is killed.
    """
    argv = list(argv)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        err = stack.enter_context(tempfile.TemporaryFile())
        stdin: Any = (
            stack.enter_context(stdin_path.open("rb")) if stdin_path else subprocess.DEVNULL
        )
        result_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        result_path = result_dir / "result.json"
        interval = sample_interval if sample_rss else 0.0
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result_path), str(interval), *argv],
            stdin=stdin,
            stdout=out,
            stderr=err,
            env=dict(env),
            start_new_session=True,
        )
        try:
            launcher.wait(timeout)
        except BaseException as error:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            if isinstance(error, subprocess.TimeoutExpired):
                raise BenchmarkError(
                    f"{shlex.join(argv[2:6])}: no exit after {timeout:.0f}s (killed)"
                ) from None
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BenchmarkError(
                f"the launcher of {shlex.join(argv[2:6])} failed (exit {launcher.returncode}): "
                f"{stderr[-1000:]}"
            ) from None
        return Proc(
            argv=argv,
            exit_code=int(result["exit"]),
            stdout=stdout,
            stderr=stderr,
            wall=float(result["wall"]),
            maxrss_kib=int(result["maxrss"]),
            cpu=float(result["cpu"]),
            rss_samples=[(float(t), int(kib)) for t, kib in result["samples"]],
        )


def clean_environment(home: Path) -> dict[str, str]:
    """This process's environment without TOKENREFRESH_*/TIKTOK_*, HOME in a temp dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env["HOME"] = str(home)
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    return env
