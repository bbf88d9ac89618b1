"""Progress of a training run, as rank 0 shows it.

On a terminal, a tqdm bar per epoch on stderr with the running loss and samples/s; in a
batch job's log (stderr not a terminal), no bar, since its carriage returns turn a log
into one enormous line. Either way one summary line per epoch goes to the console (to
stdout and rank 0's log file). The other ranks show nothing, and --quiet shows no bar.
"""
import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, console, epochs, steps_per_epoch, global_batch):
        self.console = console
        self.bar_wanted = console.shows_output and sys.stderr.isatty()
        self.epochs, self.steps, self.global_batch = epochs, steps_per_epoch, global_batch
        self._bar = None

    def start_epoch(self, epoch):
        self._loss_sum, self._done, self._started = 0.0, 0, time.perf_counter()
        if self.bar_wanted:
            self._bar = tqdm(total=self.steps, desc=f"epoch {epoch}/{self.epochs}",
                             unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)

    def step(self, loss):
        """One step done; `loss` is this rank's batch loss (no communication for a bar)."""
        if self._bar is None:
            return
        self._loss_sum += loss
        self._done += 1
        rate = self._done * self.global_batch / max(time.perf_counter() - self._started, 1e-9)
        self._bar.set_postfix(loss=f"{self._loss_sum / self._done:.4f}",
                              samples_per_s=f"{rate:.0f}", refresh=False)
        self._bar.update(1)

    def end_epoch(self, summary):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.console.say(summary)
