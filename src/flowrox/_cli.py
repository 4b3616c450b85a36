"""The command line: `python -m flowrox <command>`."""

import argparse

from ._demo import run_demo


def _demo(arguments) -> int:
    run_demo(num_samples=arguments.samples, seed=arguments.seed, image=arguments.image)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flowrox",
        description="flowrox: normalizing flows as first-class NumPyro citizens.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="an end-to-end tour: build a flow, sample it, use it as a NUTS prior",
        description=(
            "Builds a flow, samples it, uses it as the prior of a NumPyro model, "
            "runs NUTS and prints the posterior next to the exact answer, then "
            "fits a flow to 2-D samples and saves a PNG of its samples."
        ),
    )
    demo.add_argument("--samples", type=int, default=2000, help="NUTS draws (2000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument(
        "--image",
        default="flowrox_demo.png",
        help="where to save the PNG of samples (flowrox_demo.png)",
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
