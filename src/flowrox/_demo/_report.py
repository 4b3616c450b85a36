"""The demo's vocabulary: settings, verdicts, step results and steps."""

from collections.abc import Callable
from typing import NamedTuple


class MatplotlibMissingError(ImportError):
    """The demo was asked for an image and matplotlib is not installed."""

    def __init__(self):
        super().__init__(
            "the demo's image is drawn with matplotlib, which flowrox does not "
            'install by default: pip install "flowrox[notebooks]" (in a '
            'checkout: pip install -e ".[notebooks]"), or run the demo without '
            "--image"
        )


class Settings(NamedTuple):
    """What every step may read: NUTS draws, the seed and the image path."""

    num_samples: int = 2000
    seed: int = 0
    image: str | None = None


class Verdict(NamedTuple):
    """One measurement against its target, and what a miss means."""

    measured: str
    good: bool
    target: str
    advice: str

    def line(self) -> str:
        if self.good:
            return f"{self.measured}: good ({self.target})"
        return f"{self.measured}: missed the target ({self.target}); {self.advice}"


class StepResult(NamedTuple):
    """What a step returns: its numbers (plain floats and ints) and verdicts."""

    numbers: dict
    verdicts: list[Verdict]


class Step(NamedTuple):
    """A step of the tour: `--step` name, heading, `--help` line, function."""

    name: str
    title: str
    summary: str
    run: Callable[[Settings], StepResult]


def _show(text: str) -> None:
    print(f"   {text}")
