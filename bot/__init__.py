"""The Telegram door: turns chat messages and button presses into calls on the store."""
