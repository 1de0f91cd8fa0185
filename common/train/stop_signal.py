"""SIGTERM and SIGINT stop a run at the next optimizer step, not in the middle of one.

Batch schedulers and spot machines send SIGTERM, then SIGKILL after a grace period (often
30 s). The handler only notes the signal; the loop stops at the end of the current
accumulation group, so the model, optimizer and RNG states are those of a whole step and a
checkpoint taken there resumes bit-identically. A second Ctrl-C stops at once.

The processes of a multi-process run must stop at the same step, or one would wait in a
collective for a step the others never take. They agree with one small all-reduce every
AGREE_EVERY optimizer steps and at each epoch's end, a fraction of the gradients' own
all-reduce; a single process reads its flag at every step.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from common.errors import Terminated

AGREE_EVERY = 8  # optimizer steps between two agreements of a multi-process run
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


class StopSignal:
    """`with StopSignal(accelerator) as stop:` ... `if stop.agreed(group, last): ...`"""

    def __init__(self, accelerator: Any):
        self.accelerator = accelerator
        self.signum = 0          # the signal this process received; 0: none
        self.agreed_signum = 0   # the one the run stops for, once every process knows
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # handlers can be set there alone
            for signum in EXIT_CODES:
                if signal.getsignal(signum) is signal.SIG_IGN:  # as a shell starts a background job: kept so
                    continue
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def finish(self) -> None:
        """The last step is taken. What is left (the weights chosen, the decision, the report, the
        commit) is no step to wait for, so a signal from here on ends the run at once, through the
        handlers from before (run_cli's: KeyboardInterrupt, Terminated), and one noted since the
        last agreement ends it now: nothing is swapped in after the user asked to stop. Every
        process calls it at the same point, and the processes agree once more (SIGTERM wins)."""
        self.agreed(0, boundary=True)
        signum = self.agreed_signum or self.signum
        self.__exit__()
        self._previous.clear()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signum:
            raise Terminated

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user will not wait for the step
        self.signum = self.signum or signum

    def agreed(self, optimizer_step: int, boundary: bool = False) -> bool:
        """Whether the run stops after this optimizer step (every process calls this after each
        one, and with `boundary` at each epoch's end). The same answer on every process."""
        if self.agreed_signum:
            return True
        if self.accelerator.num_processes == 1:
            self.agreed_signum = self.signum
        elif boundary or (optimizer_step + 1) % AGREE_EVERY == 0:
            import torch

            # Processes that got SIGTERM, and those that got Ctrl-C: SIGTERM wins.
            flags = torch.tensor([self.signum == s for s in EXIT_CODES], dtype=torch.float32,
                                 device=self.accelerator.device)
            counts = self.accelerator.reduce(flags, reduction="sum").tolist()
            self.agreed_signum = next((int(s) for s, n in zip(EXIT_CODES, counts, strict=True) if n > 0), 0)
        return bool(self.agreed_signum)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.agreed_signum), 143)

    @property
    def name(self) -> str:
        return NAMES.get(signal.Signals(self.agreed_signum), f"signal {self.agreed_signum}")
