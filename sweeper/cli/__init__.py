"""The command line: the `sweeper` group, its commands (each listed once) and shared options."""

from sweeper.cli.main import COMMANDS, cli, console, main

__all__ = ["COMMANDS", "cli", "console", "main"]
