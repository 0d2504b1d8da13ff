"""Helpers the tests share: signing in as a browser would, and driving Chromium."""

import os
import shutil

import pytest

PASSWORD = "correct horse battery"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("SUPPORTBOT_SCREENSHOTS")

# Browser tests run wherever Chromium is, and always in CI, which installs it.
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)

# Tests of what only PostgreSQL does, such as skipping locked rows.
needs_postgresql = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL: set TEST_DATABASE_URL to a PostgreSQL database",
)


def csrf_token_in(page: str) -> str:
    """Read the CSRF token that every page carries in its head."""
    return page.split('<meta name="csrf-token" content="')[1].split('"')[0]


def csrf_token_of(client, path="/console/") -> str:
    """Fetch ``path`` with a Flask test client and read its CSRF token."""
    return csrf_token_in(client.get(path).get_data(as_text=True))


def log_in(client, email, password=PASSWORD):
    """Sign ``client`` in through the login form, as a browser would."""
    token = csrf_token_of(client, "/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
    )


def screenshot(page, name, full_page=False):
    """Save a picture of ``page`` when SUPPORTBOT_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        path = os.path.join(SCREENSHOTS, f"{name}.png")
        page.screenshot(path=path, full_page=full_page)
