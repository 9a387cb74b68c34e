"""The one table the benchmarks print, and the machine it was measured on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path


@dataclass(frozen=True)
class Row:
    section: str
    measurement: str
    value: str
    """The service's figure."""
    reference: str
    """The same thing measured in the same run on the reference."""
    ratio: str
    target: str
    """The issue's target for this row and whether it was met, or empty."""


TIMES = "\N{MULTIPLICATION SIGN}"
HEADERS = ("section", "measurement", "incident-bot on {engine}", "reference", "ratio", "target")
"""The table's header; the service's column names the engine its store ran on."""


def ratio(value: float, reference: float) -> str:
    if reference <= 0 or value != value or reference != reference:  # zero or NaN
        return "—"
    return f"{value / reference:.2f}{TIMES}"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def per_second(value: float) -> str:
    return f"{value:,.0f}/s"


def milliseconds(value: float) -> str:
    if value != value:
        return "—"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MB"


def render_table(rows: list[Row], engine: str) -> str:
    """A Markdown table, padded so it also reads well as plain text; `engine` is what the
    service's store ran on (e.g. "SQLite 3.40.1"), named in the header."""
    cells = [
        tuple(header.format(engine=engine) for header in HEADERS),
        *((r.section, r.measurement, r.value, r.reference, r.ratio, r.target) for r in rows),
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(HEADERS))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), separator, *(line(row) for row in cells[1:])])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(database: str, driver: str) -> str:
    """The machine, the database (`database`: engine, version, where) and the libraries,
    the database's `driver` among them."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    libraries = ", ".join(
        f"{name} {version(name)}"
        for name in ("aiogram", "fastapi", "uvicorn", "sqlalchemy", driver, "pydantic")
    )
    return (
        f"Machine: {_cpu_model()}, {os.cpu_count()} cores ({usable} usable),"
        f" {platform.system()} {platform.release()}; Python {platform.python_version()},"
        f" {database}; {libraries}."
        f" Load average at start: {load}. Run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )
