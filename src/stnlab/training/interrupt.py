"""Stopping a run on SIGTERM or Ctrl-C: at the end of the current step, with ``last.ckpt`` written, and an exit
status that says so (128 + the signal's number, as a shell reports a command killed by it).

Lightning stops a fit on SIGTERM at the end of the current training step (or validation batch) by raising
``SIGTERMException``, a ``SystemExit`` without a code: the run would end with status 0 and nothing saved.
:class:`StopOnSignal` routes Ctrl-C (SIGINT) through the same path, so an optimizer step is never cut in half,
writes ``last.ckpt`` when the fit stops that way, and ``train`` raises :class:`RunInterrupted` naming the resume
command. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from stnlab.errors import StnlabError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(StnlabError):
    """SIGTERM or SIGINT stopped the run after its checkpoint was written; the process exits 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopOnSignal(pl.Callback):
    """During the fit: SIGINT as SIGTERM (stop at the end of the step), and ``last.ckpt`` written when it stops."""

    def __init__(self, last_ckpt: Path):
        self.path = Path(last_ckpt)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        # Lightning installs its SIGTERM handler after this hook, composed with the one found here.
        if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
            return
        self._previous = {s: signal.getsignal(s) for s in SIGNALS}
        signal.signal(signal.SIGTERM, self._note)
        signal.signal(signal.SIGINT, self._stop_after_step)

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def _stop_after_step(self, signum, frame) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if self.signum is not None or handler == self._note:  # a second Ctrl-C, or Lightning's handler not yet in
            raise KeyboardInterrupt
        self.signum = signum
        handler(signal.SIGTERM, frame)  # Lightning's: sets the flag its loops check after each step

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            trainer.save_checkpoint(self.path, weights_only=False)  # at a step's end: resume=last goes on from here

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    def interrupted(self, trainer, run_dir: Path) -> RunInterrupted:
        signum = self.signum or signal.SIGTERM
        return RunInterrupted(
            f"{signal.Signals(signum).name} stopped the run at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); {self.path} holds it: continue with resume=last run_dir={run_dir}",
            signum,
        )
