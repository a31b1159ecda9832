"""LeRobot's import-time noise (torchcodec's traceback, pynput's display explanation) is one line
each in our processes, and every other log record passes untouched."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from lerobot_pirl import startup_noise

IMPORTS = (
    "from lerobot.utils.utils import init_logging; init_logging(); import lerobot_pirl; "
    "import lerobot.rl.actor, lerobot.teleoperators.keyboard.teleop_keyboard; "
    "import logging; logging.getLogger('lerobot.utils.keyboard_input').info('a real notice stays')"
)


@pytest.mark.integration
def test_an_actors_imports_print_one_line_per_notice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS], capture_output=True, text=True, timeout=300, env=env
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Try one of the following" not in output, output[-3000:]
    assert output.count("torchcodec") <= 1 and output.count("pynput") <= 1, output
    assert "a real notice stays" in output


def test_the_filters_rewrite_only_their_own_records() -> None:
    startup_noise._said.discard(startup_noise.PYNPUT_MARK)
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s: %s", (startup_noise.PYNPUT_MARK, "Bad display"), None
    )
    assert startup_noise._one_line_pynput_notice(record) and "\n" not in record.getMessage()
    assert record.getMessage().startswith("pynput has no X display")
    again = logging.LogRecord("x", logging.INFO, __file__, 1, startup_noise.PYNPUT_MARK, None, None)
    assert not startup_noise._one_line_pynput_notice(again)  # said once per process
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "learner at %s", ("host:1",), None)
    assert startup_noise._one_line_pynput_notice(other) and startup_noise._one_line_torchcodec_warning(other)
    assert other.getMessage() == "learner at host:1"
