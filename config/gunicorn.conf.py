"""gunicorn settings for the web app: `gunicorn -c config/gunicorn.conf.py config.wsgi` (README: Production).

Bind address, worker count and timeouts come from the environment like every other setting."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
# The access log shows inbound URL tokens masked (they are the secret part of Centra's webhook URL).
logger_class = "config.gunicorn_logging.MaskingLogger"
# Behind a TLS proxy on the same host: trust its X-Forwarded-* headers (set FORWARDED_ALLOW_IPS for others).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
