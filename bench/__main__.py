"""`uv run python -m bench [section ...] [--quick] [--rows N] [--database-url URL]`: one table.

Every speed figure stands beside a reference measured in the same run on the same
machine, and the ratio between the two is the result: these machines are shared and
noisy, so absolute figures from different runs do not compare. The store runs on SQLite,
or with --database-url on PostgreSQL (http and ingest; growth is SQLite's alone).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy.exc import ArgumentError

from bench import growth, http_api, ingest
from bench.databases import Databases, parse_server_url
from bench.report import Row, machine, render_table
from main import run

Section = Callable[[argparse.Namespace, Databases, Callable[[str], None]], Awaitable[list[Row]]]
SECTIONS: dict[str, Section] = {
    "http": lambda options, databases, progress: http_api.run(databases, options.quick, progress),
    "growth": lambda options, databases, progress: growth.run(
        options.rows, options.quick, progress
    ),
    "ingest": lambda options, databases, progress: ingest.run(databases, options.quick, progress),
}
SQLITE_ONLY = {
    "growth": "it seeds a SQLite file with plain sqlite3; run it without --database-url",
}
"""Sections that measure SQLite alone, and why."""
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
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=(
            "run on this PostgreSQL server (postgresql+asyncpg://user@host:5432/postgres):"
            " the service and each reference get a database of their own there, created"
            " and dropped by the bench; growth is left out (SQLite only)"
        ),
    )
    options = parser.parse_args(argv)
    unknown = [name for name in options.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    if options.rows is None:
        options.rows = growth.QUICK_ROWS if options.quick else growth.FULL_ROWS
    options.skipped = []
    if options.database_url is not None:
        try:
            parse_server_url(options.database_url)
        except (ArgumentError, ValueError) as error:
            parser.error(f"--database-url: {error}")
        for name in options.sections:
            if name in SQLITE_ONLY:
                parser.error(f"{name} runs on SQLite only: {SQLITE_ONLY[name]}")
        if not options.sections:
            options.skipped = list(SQLITE_ONLY)
    options.sections = options.sections or [
        name for name in SECTIONS if name not in options.skipped
    ]
    return options


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


async def connect(options: argparse.Namespace) -> Databases:
    if options.database_url is None:
        return Databases.sqlite()
    return await Databases.on_server(options.database_url)


async def run_sections(options: argparse.Namespace, databases: Databases) -> list[Row]:
    rows: list[Row] = []
    for name in options.sections:
        started = time.monotonic()
        rows.extend(await SECTIONS[name](options, databases, progress))
        progress(f"{name} took {time.monotonic() - started:.0f} s")
    return sorted(rows, key=lambda row: ORDER.index(row.section))


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    # The event loop main.py runs the service on (uvloop), for every section alike.
    try:
        databases = run(connect(options))
    except (OSError, asyncpg.PostgresError) as error:
        print(f"PostgreSQL at --database-url is unreachable or refused: {error}", file=sys.stderr)
        return 1
    header = machine(databases.where, databases.driver)
    rows = run(run_sections(options, databases))
    print()
    print(render_table(rows, databases.label))
    print()
    print(header)
    print(
        f"Sections: {', '.join(options.sections)}, on {databases.label};"
        f" took {time.monotonic() - started:.0f} s."
    )
    for name in options.skipped:
        print(f"Not run on {databases.engine}: {name} ({SQLITE_ONLY[name]}).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
