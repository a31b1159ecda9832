"""Start-up noise from LeRobot's import, cut to one line without hiding anything else.

LeRobot 0.6.1 picks its default video decoder at import: when the installed ``torchcodec`` cannot
load (no FFmpeg shared libraries, the usual case on a server), its warning carries torchcodec's
whole loading traceback, about 100 lines, on every process start. The learner and actors decode
no video; the line that stays says what happened and what LeRobot does instead.
"""

from __future__ import annotations

import logging

LEROBOT_IMPORT_LOGGER = "lerobot.utils.import_utils"
TORCHCODEC_MARK = "'torchcodec' is installed but cannot be loaded"


def _one_line_torchcodec_warning(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if TORCHCODEC_MARK in message:
        record.msg = (
            "torchcodec is installed but cannot load (FFmpeg's shared libraries not found); "
            "LeRobot decodes videos with pyav instead"
        )
        record.args = None
    return True


def quiet_lerobot_import() -> None:
    """Install the filter on LeRobot's import-utilities logger (idempotent)."""
    logger = logging.getLogger(LEROBOT_IMPORT_LOGGER)
    if _one_line_torchcodec_warning not in logger.filters:
        logger.addFilter(_one_line_torchcodec_warning)
