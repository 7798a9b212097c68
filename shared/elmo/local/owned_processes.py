"""Background servers the local stack starts, and only those.

A server counts as ours when the pid file we asked it to live by names a live
process whose command line still carries the expected marker (``kafka.Kafka``,
``redis-server``): a recycled pid or somebody else's server on the same port is
never signalled.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def owned_pid(pid_file: Path, cmdline_marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and its command line contains ``cmdline_marker``."""
    pid = _read_pid(pid_file)
    if pid is None:
        return None
    _reap_if_our_child(pid)
    return pid if cmdline_marker in _command_line(pid) else None


def stop_owned_process(pid_file: Path, cmdline_marker: str, grace_s: float) -> int | None:
    """SIGTERM our process, SIGKILL it after ``grace_s``; remove the pid file. Returns the pid stopped, if any."""
    pid = owned_pid(pid_file, cmdline_marker)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, cmdline_marker, grace_s):
            _signal(pid, signal.SIGKILL)
            _wait_for_exit(pid, cmdline_marker, 5.0)
    pid_file.unlink(missing_ok=True)
    return pid


def kill_owned_process(pid_file: Path, cmdline_marker: str) -> int | None:
    """SIGKILL our process at once (a crash, for failure tests), wait for it to go; remove the pid file."""
    pid = owned_pid(pid_file, cmdline_marker)
    if pid is not None:
        _signal(pid, signal.SIGKILL)
        _wait_for_exit(pid, cmdline_marker, 5.0)
    pid_file.unlink(missing_ok=True)
    return pid


@contextmanager
def startup_lock(lock_file: Path) -> Iterator[None]:
    """Serialise up/down across processes (parallel test runs, two terminals) so only one starts the server."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(log_file: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a server's log, for error messages."""
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_file})"
    return "\n".join(text.splitlines()[-lines:])


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _command_line(pid: int) -> str:
    """The process's command line, or "" if it is gone (a zombie's is empty too)."""
    proc_cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return proc_cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return ""
    # No procfs (macOS): ps prints nothing for a missing pid.
    result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True)
    return result.stdout.strip()


def _reap_if_our_child(pid: int) -> None:
    """A server started by this very Python process lingers as a zombie after exiting until waited for."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_for_exit(pid: int, cmdline_marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap_if_our_child(pid)
        if cmdline_marker not in _command_line(pid):
            return True
        time.sleep(0.1)
    return False
