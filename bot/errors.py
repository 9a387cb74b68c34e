"""Errors the rest of the service may need to name without importing aiogram."""

from __future__ import annotations


class BotStartError(RuntimeError):
    """The bot cannot run at all: Telegram rejected the token."""
