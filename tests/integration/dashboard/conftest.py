"""The dashboard's integration tests reuse the API tests' real PostgreSQL and live API server."""

from tests.integration.api.conftest import api_settings, live_api, wpg  # noqa: F401
from tests.integration.api.test_docs_browser import browser  # noqa: F401
