"""Forms read safely, the client as a trusted proxy saw it, and response headers
that keep the console's pages to themselves."""

from flask import Flask, Request, request
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


class SafeFormRequest(Request):
    """A request whose form leaves out parts sent without a field name."""

    def _load_form_data(self) -> None:
        super()._load_form_data()
        # No view can read such a part, and the CSRF check fails on one with a
        # server error rather than refusing the form.
        form = self.__dict__["form"]
        if None in form:
            named = [
                (key, value) for key, value in form.items(multi=True) if key is not None
            ]
            self.__dict__["form"] = type(form)(named)


def init_app(app: Flask) -> None:
    """Read forms safely and add the security headers to every response."""
    app.request_class = SafeFormRequest
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # The client's address and scheme as the proxies in front received
        # them: sign-in limits count each client, not the proxy.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

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
