"""Commands run under a launcher (`accelerate launch`, `torchrun`): one wrapper for every launched command.

Every launched process reads the same arguments (and jobs file), so a mistake fails on each of them: only the node's
first process reports it, the others exit with the same status (2) silently. Threads follow the processes on the
node: torch's default (one per core) in each of several processes oversubscribes the cores.
"""

from __future__ import annotations

import functools
import os
import time


# A launched process that is not its node's first one exits this long after an error that its node's first process
# reports: torchrun stops every process when one exits, so were this one first, the message could be lost.
QUIET_EXIT_DELAY_S = 10
USER_ERRORS = (FileNotFoundError, ValueError, OSError, ImportError)  # what `cli.main` reports as a message, status 2


def _int_from_env(names, default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return default


def local_process_index() -> int:
    """This process's index on its node, from the launcher's environment (0 without a launcher)."""
    return _int_from_env(["LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK"],
                         0)


def local_process_count() -> int:
    """Processes the launcher started on this node (1 without a launcher)."""
    return _int_from_env(["LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"], 1)


def threads_per_process() -> int | None:
    """The torch threads each launched process should use: one per process when several share the node, unless
    OMP_NUM_THREADS says otherwise; None to leave torch's default (a single process)."""
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return 1 if local_process_count() > 1 else None


def set_threads_per_process():
    threads = threads_per_process()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def launched_command(cleanup=None):
    """Decorator of a command `run(args)` that may run under a launcher: sets the threads per process, reports a user
    error on the node's first process only (the others return 2 quietly), and runs `cleanup()` however it ends."""

    def decorate(run):
        @functools.wraps(run)
        def wrapper(args):
            set_threads_per_process()
            try:
                return run(args)
            except USER_ERRORS:
                if local_process_index() != 0:
                    time.sleep(QUIET_EXIT_DELAY_S)
                    return 2
                raise
            finally:
                if cleanup is not None:
                    cleanup()

        return wrapper

    return decorate
