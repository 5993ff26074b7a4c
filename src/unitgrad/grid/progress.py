"""Grid progress: done / running / failed / queued, elapsed and ETA; a tqdm bar on a terminal, else a line per event."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts of the grid's runs; `event` reports one finished, failed or retried run."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.bar = tqdm(total=total, unit="run", file=self.stream) if self.stream.isatty() else None

    def summary(self) -> str:
        elapsed = time.monotonic() - self.start
        left = self.total - self.done - self.failed
        eta = _clock(elapsed / self.done * left) if self.done else "?"
        return (
            f"done {self.done}/{self.total}, running {self.running}, failed {self.failed}, "
            f"queued {left - self.running}, elapsed {_clock(elapsed)}, ETA {eta}"
        )

    def update(self, running: int) -> None:
        """Refresh the running count (the bar redraws; plain output waits for the next event)."""
        self.running = running
        if self.bar is not None:
            self.bar.set_postfix_str(self.summary().split(", ", 1)[1], refresh=True)

    def event(self, message: str, done: int = 0, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        self.running = max(0, self.running - done - failed)  # a finished run no longer runs
        if self.bar is not None:
            self.bar.update(done)
            self.bar.write(message)
            self.update(self.running)
        else:
            print(f"[grid] {message} | {self.summary()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
