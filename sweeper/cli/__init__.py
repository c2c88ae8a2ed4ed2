"""The command line: the `sweeper` group, its commands (each listed once) and shared options."""

from sweeper.cli.main import COMMANDS, cli, main

__all__ = ["COMMANDS", "cli", "main"]
