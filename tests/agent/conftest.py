"""The capture tests' broken media (``media_dir``: corrupt.avi, truncated.avi, ...) for the agent tests."""

from tests.capture.conftest import media_dir, vtest  # noqa: F401 - fixtures re-exported
