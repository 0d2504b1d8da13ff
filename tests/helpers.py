"""Helpers the tests share: signing in as a browser would."""

PASSWORD = "correct horse battery"


def csrf_token_of(client, path="/console/") -> str:
    """Read the CSRF token that every page carries in its head."""
    page = client.get(path).get_data(as_text=True)
    return page.split('<meta name="csrf-token" content="')[1].split('"')[0]


def log_in(client, email, password=PASSWORD):
    """Sign ``client`` in through the login form, as a browser would."""
    token = csrf_token_of(client, "/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
    )
