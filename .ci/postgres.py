"""CI's own database on the machine's PostgreSQL: `create` prints its URL, `drop` removes it
and every test database named after it. Fails (exit 1) when the server is unreachable."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

SERVER = {
    "host": os.environ.get("CI_POSTGRES_HOST", "127.0.0.1"),
    "port": int(os.environ.get("CI_POSTGRES_PORT", "5432")),
    "user": os.environ.get("CI_POSTGRES_USER", "postgres"),
    "database": "postgres",
}
CONNECT_TIMEOUT = 10


async def create(name: str) -> None:
    admin = await asyncpg.connect(**SERVER, timeout=CONNECT_TIMEOUT)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    print(f"postgresql+asyncpg://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{name}")


async def drop(name: str) -> None:
    admin = await asyncpg.connect(**SERVER, timeout=CONNECT_TIMEOUT)
    try:
        pattern = name.replace("_", r"\_") + r"\_%"
        rows = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2",
            name,
            pattern,
        )
        for row in rows:
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    action, name = sys.argv[1:3]
    try:
        asyncio.run({"create": create, "drop": drop}[action](name))
    except (OSError, asyncpg.PostgresError) as error:
        where = f"{SERVER['host']}:{SERVER['port']}"
        sys.exit(f"PostgreSQL at {where} is unreachable or refused: {error}")


if __name__ == "__main__":
    main()
