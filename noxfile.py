"""Developer sessions: `nox` (tests), `nox -s unit`, `nox -s lint`, `nox -s typecheck`.

`unit` runs every test not marked ``integration`` (nothing that starts a learner, an actor, the
demo or a CLI) in the project's own `.venv`, without installing anything:
``.venv/bin/nox -s unit``. CI runs the whole suite (`bash scripts/test.sh`).
"""

import sys

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

# Run from the project's 3.12 venv (`.venv/bin/nox`), reuse its interpreter: a bare `python3.12`
# can fail through pyenv's shim.
PYTHON = sys.executable if sys.version_info >= (3, 12) else "3.12"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.env.update({"OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    session.run("pytest", "tests", "-q", *session.posargs)


@nox.session(venv_backend="none")
def unit(session: nox.Session) -> None:
    session.env.update(
        {"OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa", "HF_HUB_OFFLINE": "1"}
    )
    session.run(
        sys.executable, "-m", "pytest", "tests", "-q", "-m", "not integration", "-n", "auto", *session.posargs
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "lerobot_pirl")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", "mypy")
    session.run("mypy", "lerobot_pirl")
