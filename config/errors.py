"""The configuration error: one message an operator can act on, naming the file, key or line."""


class ConfigError(Exception):
    """A settings or operator file is wrong; the message says where and what."""
