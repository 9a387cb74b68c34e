"""`uv run python -m bench [http|growth|ingest ...] [--quick] [--rows N]`: one table.

Every speed figure stands beside a reference measured in the same run on the same
machine, and the ratio between the two is the result: these machines are shared and
noisy, so absolute figures from different runs do not compare.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Awaitable, Callable

from bench import growth, http_api, ingest
from bench.report import Row, machine, render_table
from main import run

SECTIONS: dict[
    str, Callable[[argparse.Namespace, Callable[[str], None]], Awaitable[list[Row]]]
] = {
    "http": lambda options, progress: http_api.run(options.quick, progress),
    "growth": lambda options, progress: growth.run(options.rows, options.quick, progress),
    "ingest": lambda options, progress: ingest.run(options.quick, progress),
}
ORDER = ("HTTP", "growth", "ingestion", "memory")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="section",
        help=f"which to run: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter runs, fewer updates, and 100,000 rows for growth: a smoke run",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="the large store for growth (default 1,000,000; 100,000 with --quick)",
    )
    options = parser.parse_args(argv)
    unknown = [name for name in options.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    if options.rows is None:
        options.rows = growth.QUICK_ROWS if options.quick else growth.FULL_ROWS
    options.sections = options.sections or list(SECTIONS)
    return options


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


async def run_sections(options: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for name in options.sections:
        started = time.monotonic()
        rows.extend(await SECTIONS[name](options, progress))
        progress(f"{name} took {time.monotonic() - started:.0f} s")
    return sorted(rows, key=lambda row: ORDER.index(row.section))


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    header = machine()
    started = time.monotonic()
    # The event loop main.py runs the service on (uvloop), for every section alike.
    rows = run(run_sections(options))
    print()
    print(render_table(rows))
    print()
    print(header)
    print(f"Sections: {', '.join(options.sections)}; took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
