"""The errors every layer raises for bad input, at the bottom of the import graph.

A `LerobotPirlError` means the input or the setup cannot work, and its message says what to
change in one line: the console scripts print it and exit 2, without a traceback. Each layer
subclasses it for its own concern (recipes, env config, processors, transport, checkpoints), so a
caller can catch one concern without catching the others.
"""

from __future__ import annotations


class LerobotPirlError(Exception):
    """Bad input or an unusable setup; the message names what to change."""


class RecipeError(LerobotPirlError):
    """Recipe discovery, registration, resolution and set-up errors."""
