"""The command line: `python -m flowrox <command>`."""

import argparse
import sys
import textwrap

from ._demo import (
    STEPS,
    MatplotlibMissingError,
    check_request,
    describe_steps,
    run_demo,
)


def _demo(arguments) -> int:
    try:
        check_request(arguments.step, arguments.image)
    except (ValueError, MatplotlibMissingError) as error:
        print(f"python -m flowrox demo: error: {error}", file=sys.stderr)
        return 2
    run_demo(
        num_samples=arguments.samples,
        seed=arguments.seed,
        image=arguments.image,
        steps=arguments.step,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flowrox",
        description="flowrox: normalizing flows as first-class NumPyro citizens.",
        epilog="The demo's steps:\n" + describe_steps(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help=f"an end-to-end tour in {len(STEPS)} steps, each with verdicts "
        "against its targets (python -m flowrox demo --help lists them)",
        description=textwrap.fill(
            "An end-to-end tour of flowrox. Each step prints what it does and "
            "ends with verdicts: what it measured against its target, and "
            "what a miss means. The steps:",
            79,
        )
        + "\n\n"
        + describe_steps(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--samples", type=int, default=2000, help="NUTS draws in steps 2 and 3 (2000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument(
        "--step",
        action="append",
        choices=[step.name for step in STEPS],
        metavar="NAME",
        help="run only this step (repeat for several; default: all). "
        f"One of: {', '.join(step.name for step in STEPS)}",
    )
    demo.add_argument(
        "--image",
        metavar="PATH",
        help="save a PNG of the target's and the fitted flow's draws (step 'fit'); "
        'needs matplotlib: pip install "flowrox[notebooks]"',
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.print_help()
        return 0
    return arguments.handler(arguments)
