"""Ending a ROS process cleanly and in bounded time: signal handling and an exit watchdog.

Two problems of the node and the tools, both seen under ``ros2 launch`` with Fast DDS:

* rclpy's own signal handler shuts the context down the moment SIGINT arrives, while our worker
  thread may be publishing (``publisher's context is invalid``), and a second SIGINT (launch
  forwards one, the terminal sends one) raises ``KeyboardInterrupt`` inside the clean-up.
  :class:`ShutdownRequest` replaces it: a signal only *asks* for shutdown; the main loop then
  stops the worker, destroys the node and shuts the context down, in that order, and further
  signals are noted, not raised.
* Tearing down a Fast DDS participant can block for ever (seen with Fast DDS 3.2.3, the TCP
  transport of ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``: ``rcl_node_fini`` →
  ``TCPChannelResourceBasic::disconnect`` waiting on a ``dds.tcp`` thread). :func:`exit_watchdog`
  bounds that: once the results are written, the teardown gets ``timeout_s`` seconds, after
  which the process says so on stderr and exits with the code it would have returned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Optional

__all__ = ["ShutdownRequest", "exit_watchdog", "TEARDOWN_TIMEOUT_S", "NODE_TEARDOWN_S"]

#: Seconds the middleware teardown of the tools may take before the process exits anyway.
TEARDOWN_TIMEOUT_S = 8.0
#: The same for ``depth_node``: less than the 5 s launch waits after SIGINT before SIGTERM.
NODE_TEARDOWN_S = 4.0


class ShutdownRequest:
    """SIGINT/SIGTERM set :attr:`requested` instead of raising; install in the main thread.

    Args:
        on_repeat: called (from the main thread, between bytecodes) for every signal after
            the first, e.g. to log "already shutting down".
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, on_repeat: Optional[Callable[[int], None]] = None):
        self._event = threading.Event()
        self._on_repeat = on_repeat
        self.signal: Optional[int] = None
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self._event.is_set():
            if self._on_repeat is not None:
                self._on_repeat(signum)
            return
        self.signal = signum
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait up to ``timeout`` s for a request; True once requested. Signal handlers run
        during the wait (unlike during a blocking rclpy wait), so call it from the main thread."""
        return self._event.wait(timeout)

    def ignore_from_now(self) -> None:
        """Ignore SIGINT/SIGTERM for the rest of the process (call when clean-up is done).

        Python's finalisation resets *Python-level* handlers to the default, so a late Ctrl-C
        (launch forwards one more) would otherwise kill the exiting process with status -2;
        ignored signals are left ignored.
        """
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def request(self) -> None:
        """Ask for shutdown from code (same effect as a signal)."""
        self._event.set()


@contextlib.contextmanager
def exit_watchdog(timeout_s: float, what: str, exit_code: Callable[[], int]) -> Iterator[None]:
    """Run the enclosed teardown; if it has not finished after ``timeout_s``, exit the process.

    Use it only around work whose results are already written (middleware teardown): the
    forced exit skips the rest of the block and Python's own clean-up.

    Args:
        timeout_s: seconds the block may take.
        what: what is being waited for (for the message).
        exit_code: called at the forced exit, returns the process exit status.
    """
    done = threading.Event()

    def watch() -> None:
        if done.wait(timeout_s):
            return
        code = int(exit_code())
        try:
            sys.stdout.flush()
        except Exception:  # a closed pipe must not stop the exit
            pass
        msg = (f"[dasp] {what} did not finish within {timeout_s:g} s (middleware teardown "
               f"blocked; results were written before it): exiting with status {code} "
               "without waiting\n")
        try:
            sys.stderr.write(msg)
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)

    thread = threading.Thread(target=watch, name="exit_watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
