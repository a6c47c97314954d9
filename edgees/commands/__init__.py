"""Subcommands of the edgees CLI; each module exposes register(subparsers)."""
