"""Input read safely, the client as a trusted proxy saw it, and response headers
that keep the console's pages to themselves."""

from flask import Flask, Request, abort, request
from werkzeug.middleware.proxy_fix import ProxyFix

CONSOLE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


# PostgreSQL text cannot hold it, and no field means it: it is taken out.
NUL = "\x00"


def without_nul(value):
    """Return ``value`` with NUL characters removed from every string in it."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


class SafeInputRequest(Request):
    """A request whose form and JSON hold only what the database can store."""

    def _load_form_data(self) -> None:
        super()._load_form_data()
        # A part sent without a field name is left out: no view can read it,
        # and the CSRF check fails on one with a server error.
        form = self.__dict__["form"]
        self.__dict__["form"] = type(form)(
            (without_nul(key), without_nul(value))
            for key, value in form.items(multi=True)
            if key is not None
        )

    def get_json(self, *args, **kwargs):
        """Parse the JSON body, as Flask does, without NUL characters."""
        return without_nul(super().get_json(*args, **kwargs))


def init_app(app: Flask) -> None:
    """Read input safely and add the security headers to every response."""
    app.request_class = SafeInputRequest
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # The client's address and scheme as the proxies in front received
        # them: sign-in limits count each client, not the proxy.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    @app.before_request
    def refuse_nul_in_the_query():
        # Most requests have no query; theirs need not be parsed to know.
        if not request.query_string:
            return
        if any(NUL in key + value for key, value in request.args.items(multi=True)):
            abort(400, "The address holds a NUL character, which nothing here takes.")

    @app.after_request
    def add_security_headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        # Pages that set their own policy, such as those shown inside
        # Telegram's frames, keep it.
        if "Content-Security-Policy" not in headers:
            headers["Content-Security-Policy"] = CONSOLE_POLICY
            headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure:
            headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response
