"""The benchmark behind ``pml-relaxed bench``. Nothing in the library imports it."""
from .cli import get_args_parser, main

__all__ = ["get_args_parser", "main"]
