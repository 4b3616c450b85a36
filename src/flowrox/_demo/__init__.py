"""`python -m flowrox demo`: an end-to-end tour of what flowrox does today.

The tour is the list `STEPS`. A step is a function of the demo's `Settings`
that prints what it does and returns a `StepResult`: the numbers it measured
and its verdicts, each a measurement set against its target. To add a step,
write such a function and append a `Step` to `STEPS`; the command line's
`--help` and its `--step` choices are generated from the list.
"""

from ._report import MatplotlibMissingError as MatplotlibMissingError
from ._report import Settings as Settings
from ._report import Step as Step
from ._report import StepResult as StepResult
from ._report import Verdict as Verdict
from ._runner import STEPS as STEPS
from ._runner import check_request as check_request
from ._runner import describe_steps as describe_steps
from ._runner import run_demo as run_demo
from ._tour import save_samples_figure as save_samples_figure
