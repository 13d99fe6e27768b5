"""Errors that text analysis raises."""


class ModelLoadError(Exception):
    """The encoder's weights or tokenizer could not be loaded."""
