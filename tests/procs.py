"""Stopping a test's server process together with everything it started.

vLLM runs its engine core in a child process (``VLLM::EngineCore``, 2-3 GB). When a server
is stopped only by its own pid and takes longer than the grace period, the kill reaches the
parent alone and the engine core lives on as an orphan, spinning for the rest of the run.
Servers are therefore started in a session of their own, and stopped by process group: the
polite signal first, then SIGKILL for whatever of the group is still there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (killed by a timeout or
    the OOM killer), so a server never outlives the run that started it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Popen keywords: the child leads a new session, so its process group holds its children
# too, and it is told to stop when the test process goes away.
OWN_GROUP: dict[str, Any] = {"start_new_session": True, "preexec_fn": _die_with_parent}


def stop_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    first: signal.Signals = signal.SIGTERM,
    grace_s: float = 30.0,
) -> None:
    """Send ``first`` to ``proc``'s process group, wait up to ``grace_s``, then SIGKILL the
    group (children that outlived their parent included)."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid != os.getpgid(0):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, first)
    elif proc.poll() is None:
        proc.send_signal(first)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if pgid is not None and pgid != os.getpgid(0):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
