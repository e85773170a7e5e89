"""Ctrl-C during `fit`: a graceful stop, and blocks that a Ctrl-C cannot cut.

Python delivers signals to the main thread only, between bytecodes. Both
pieces below do nothing on another thread, or where the SIGINT handler was
installed outside Python (it could not be put back).
"""

import contextlib
import signal
import sys
import threading


def _can_handle_sigint():
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not None
    )


class GracefulInterrupt:
    """Turns the first Ctrl-C into a stop at the end of the current batch.

    Once installed, the first Ctrl-C sets `requested` and `model.stop_training`;
    a second one sets `aborted`, puts the previous handler back, calls
    `on_abort` and raises `KeyboardInterrupt`.
    """

    def __init__(self, name: str, on_abort=None):
        self.name = name
        self.on_abort = on_abort
        self._model = None
        self._previous = None
        self.reset()

    def reset(self) -> None:
        self.requested = self.aborted = False

    @property
    def installed(self) -> bool:
        return self._previous is not None

    def install(self, model) -> None:
        self._model = model
        self.reset()
        if self.installed or not _can_handle_sigint():
            return
        self._previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if not self.installed:
            return
        previous, self._previous = self._previous, None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum, frame):
        if self.requested:
            # A second Ctrl-C: the user does not want to wait for the batch.
            self.uninstall()
            self.aborted = True
            if self.on_abort is not None:
                self.on_abort()
            raise KeyboardInterrupt
        self.requested = True
        self._model.stop_training = True
        sys.stderr.write(
            f"\n{self.name}: stopping at the end of the current batch "
            "(press Ctrl-C again to abort).\n"
        )
        sys.stderr.flush()


@contextlib.contextmanager
def hold_interrupts():
    """Holds a Ctrl-C back until the block is done, then delivers it.

    A weight copy cut short by `KeyboardInterrupt` would mix two epochs.
    """
    if not _can_handle_sigint():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
