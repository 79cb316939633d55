"""Invoke entry point: `inv --list`. The tasks live in jetwheel.cli so the `jetwheel` console
script offers the same ones from a plain pip install."""

from jetwheel.cli import namespace as ns

__all__ = ["ns"]
