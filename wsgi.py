"""The WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from supportbot import create_app

app = create_app()
