"""`orderflow bench`: the load driver and the skeleton baselines."""

from importlib.util import find_spec

# The optional `bench` extra (pyproject.toml): not part of the runtime dependencies.
EXTRA_LIBRARIES = ("psutil", "matplotlib")


def missing_libraries() -> list[str]:
    """The `bench` extra's libraries this environment lacks."""
    return [name for name in EXTRA_LIBRARIES if find_spec(name) is None]
