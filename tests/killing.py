"""A run that is killed at a chosen logged step: for the loops' kill-and-resume tests."""

from deepscope.train import Run


class Killed(Exception):
    """Raised by :class:`KillAt` right after it logs its step."""


class KillAt(Run):
    """A :class:`~deepscope.train.Run` that raises :class:`Killed` once ``kill_at`` is logged."""

    def __init__(self, *a, kill_at, **kw):
        super().__init__(*a, **kw)
        self.kill_at = kill_at

    def log(self, step, **metrics):
        super().log(step, **metrics)
        if step == self.kill_at:
            raise Killed
