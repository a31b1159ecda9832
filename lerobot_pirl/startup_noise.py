"""Start-up noise from LeRobot's imports, cut to one line each without hiding anything else.

* LeRobot 0.6.1 picks its default video decoder at import: when the installed ``torchcodec``
  cannot load (no FFmpeg shared libraries, the usual case on a server), its warning carries
  torchcodec's whole loading traceback, about 100 lines, and comes more than once per process.
* Its keyboard modules (imported by the RL actor through the teleoperators) try ``pynput`` at
  import: with no X display each logs a multi-line "Bad display name" explanation, twice.

The learner and actors decode no video and read no keyboard; the one line that stays says what
happened and what LeRobot does instead. Every other record passes untouched.
"""

from __future__ import annotations

import logging

LEROBOT_IMPORT_LOGGER = "lerobot.utils.import_utils"
TORCHCODEC_MARK = "'torchcodec' is installed but cannot be loaded"
KEYBOARD_LOGGERS = ("lerobot.utils.keyboard_input", "")  # the second: teleop_keyboard logs on the root
PYNPUT_MARK = "Could not import pynput keyboard backend"

_said: set[str] = set()


def _once(record: logging.LogRecord, mark: str, line: str) -> bool:
    """Rewrite a record containing ``mark`` to ``line``, the first time only; others pass."""
    if mark not in record.getMessage():
        return True
    if mark in _said:
        return False
    _said.add(mark)
    record.msg, record.args = line, None
    return True


def _one_line_torchcodec_warning(record: logging.LogRecord) -> bool:
    return _once(
        record,
        TORCHCODEC_MARK,
        "torchcodec is installed but cannot load (FFmpeg's shared libraries not found); "
        "LeRobot decodes videos with pyav instead",
    )


def _one_line_pynput_notice(record: logging.LogRecord) -> bool:
    return _once(record, PYNPUT_MARK, "pynput has no X display here: LeRobot's keyboard teleoperation is off")


def quiet_lerobot_import() -> None:
    """Install the filters on the loggers LeRobot's imports use (idempotent)."""
    logger = logging.getLogger(LEROBOT_IMPORT_LOGGER)
    if _one_line_torchcodec_warning not in logger.filters:
        logger.addFilter(_one_line_torchcodec_warning)
    for name in KEYBOARD_LOGGERS:
        logger = logging.getLogger(name or None)
        if _one_line_pynput_notice not in logger.filters:
            logger.addFilter(_one_line_pynput_notice)
