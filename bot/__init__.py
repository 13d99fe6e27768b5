"""The conversation engine (knows no channel) and its channels: Telegram and the web chat."""
