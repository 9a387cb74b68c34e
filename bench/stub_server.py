"""The Telegram stand-in in a process of its own, driven over stdin/stdout.

In production Telegram's work happens on Telegram's machines; run in the benchmark's own
process, the stand-in's HTML parsing and bookkeeping would be charged to the bot. Here it
runs beside it, and `RemoteStub` drives it with one JSON line per command.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Self

from bench.seed import CHAT_ID
from settings import Settings
from tests.telegram_stub import TelegramStub

REPORT = "[monitoring] Scooter #{number} is not responding since the last firmware update"


class _Commands:
    def __init__(self, stub: TelegramStub) -> None:
        self.stub = stub
        self.chat = stub.supergroup("On-call", chat_id=CHAT_ID)
        self.user = stub.user("Alice", language_code="en")

    async def hello(self) -> dict[str, Any]:
        return {"base_url": self.stub.base_url, "token": self.stub.token, "chat_id": self.chat.id}

    async def message(self, text: str) -> dict[str, Any]:
        """A person's message; returns the update, for feeding it in directly."""
        await self.stub.send_user_message(self.chat, self.user, text)
        return {"update": self.stub.pending_updates[-1]}

    async def press(self, message_id: int, data: str) -> dict[str, Any]:
        await self.stub.press_button(self.chat, self.user, message_id, data, check=False)
        return {"update": self.stub.pending_updates[-1]}

    async def reports(self, count: int) -> dict[str, Any]:
        """`count` incident reports in the chat, queued for the bot to fetch."""
        last = 0
        for number in range(1, count + 1):
            message = await self.stub.send_user_message(
                self.chat, self.user, REPORT.format(number=number)
            )
            last = message.message_id
        return {
            "last_message_id": last,
            "last_update_id": self.stub.pending_updates[-1]["update_id"],
        }

    async def wait_confirmed(self, update_id: int, seconds: float) -> dict[str, Any]:
        return {"at": await self.stub.wait_confirmed(update_id, timeout=seconds)}

    async def first_call(self, method: str) -> dict[str, Any]:
        calls = self.stub.calls(method)
        return {"at": calls[0].at if calls else None}

    async def count_calls(self, method: str) -> dict[str, Any]:
        return {"count": len(self.stub.calls(method))}

    async def wait_calls(self, method: str, count: int, seconds: float) -> dict[str, Any]:
        await self.stub.wait_for(
            lambda: len(self.stub.calls(method)) >= count, timeout=seconds, what=method
        )
        calls = self.stub.calls(method)
        return {"at": calls[count - 1].finished_at if count else None}

    async def call_summary(self) -> dict[str, Any]:
        """How each method was answered: {method: {HTTP status: count}}."""
        summary: dict[str, dict[str, int]] = {}
        for call in self.stub.calls():
            by_status = summary.setdefault(call.method, {})
            by_status[str(call.status)] = by_status.get(str(call.status), 0) + 1
        return summary

    async def last_bot_message(self) -> dict[str, Any]:
        return {"message_id": self.stub.sent_messages(self.chat)[-1].message_id}


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with TelegramStub() as stub:
        commands = _Commands(stub)
        while line := await reader.readline():
            request = json.loads(line)
            try:
                answer = await getattr(commands, request.pop("op"))(**request)
            except Exception as error:  # reported to the driver, which raises it
                answer = {"error": f"{type(error).__name__}: {error}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


class RemoteStub:
    """The driver's side: `async with RemoteStub() as stub: await stub.call("hello")`."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self.token = ""
        self.chat_id = 0

    async def __aenter__(self) -> Self:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stub_server",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        hello = await self.call("hello")
        self.base_url, self.token, self.chat_id = (
            hello["base_url"],
            hello["token"],
            hello["chat_id"],
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    def settings(self, **values: Any) -> Settings:
        """The service's settings for a bot talking to this stand-in, no .env read."""
        values = {"bot_token": self.token, "telegram_api_url": self.base_url, **values}
        return Settings(_env_file=None, **values)

    async def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError("the stand-in is not running")
        process.stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("the stand-in process ended")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"stand-in: {op}: {answer['error']}")
        return answer


if __name__ == "__main__":
    asyncio.run(_serve())
