"""Errors that text analysis raises."""

import importlib
from types import ModuleType


class ModelLoadError(Exception):
    """The encoder's weights or tokenizer could not be loaded."""


def import_model(module: str, *, package: str, model: str) -> ModuleType:
    """Import the module of a package that ships a model's weights, or say clearly which package is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # the packages are dependencies: a broken install lands here
        raise ModelLoadError(f"this category set reads {model}, but the package {package} is not installed") from exc
