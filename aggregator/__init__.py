"""Turns a folder of saved news pages into deduplicated RSS, Atom and JSON feeds."""

__version__ = "0.1.0"
