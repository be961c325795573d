"""Settings, read from the environment (12-factor). See README "Configuration"."""

import base64
import hashlib
import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    # Tests and one-off commands still need a key; production must set one (checked by `check --deploy`).
    SECRET_KEY = "insecure-dev-key-change-me"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys, comma-separated, newest first. Anything that is not already a Fernet key is hashed into one,
# so a long random string works too. Without one, a key derived from SECRET_KEY is used (development only).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[])
if not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]

INSTALLED_APPS = [
    "config.admin.BridgeAdminConfig",  # django.contrib.admin with the bridge's own site (header, home, order)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Before django_q: integration's `qcluster` command (a graceful stop on SIGTERM) replaces django-q2's.
    "integration",
    "django_q",
    "backinstock",
]

# The development doubles (fake Rule, fake Centra: `manage.py fakerule` / `fakecentra`). On with DEBUG (`make run`)
# and in the tests (tests/settings.py); never part of a production deployment.
SANDBOX = env.bool("SANDBOX", default=DEBUG)
if SANDBOX:
    INSTALLED_APPS.append("integration.sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web process read while the worker writes; IMMEDIATE avoids upgrade deadlocks.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file (not memory) so a real qcluster process started by a test can open the test database
    # (the test hands it this path through DATABASE_URL). One file per test run, so runs never collide.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("TEST_SQLITE_PATH", default=str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3"))
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="bridge"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,  # our own models drive retries; the broker only carries ids
    "ack_failures": True,
    "catch_up": False,
    # Successful tasks are not stored: Delivery/DeliveryAttempt keep the history, and a positive limit makes the
    # monitor lock and count the whole Success table on every result. Failures are still saved.
    "save_limit": -1,
    "poll": 0.2,  # ORM broker: the pusher's sleep when the queue is empty
    "bulk": env.int("Q_WORKERS", default=2),  # ORM broker: tasks taken per poll (Redis takes one at a time)
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# The zone the admin shows times in (stored times are UTC), e.g. Europe/Stockholm.
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Times with seconds and the zone's name everywhere in the admin (config/formats/).
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start when it is missing
# WhiteNoise serves the admin's static files from any server (gunicorn too, DEBUG off); finders mean no
# collectstatic step is needed for this small set of files.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Centra to Rule bridge",
    "DESCRIPTION": "Inbound endpoints for Centra webhooks and signed storefront JSON events.",
    "VERSION": "1.0.0",
}

# Product settings
RULE_API_URL = env.str("RULE_API_URL", default="https://app.rule.io/api/v2")
RULE_CONNECT_TIMEOUT = env.float("RULE_CONNECT_TIMEOUT", default=3.0)
RULE_READ_TIMEOUT = env.float("RULE_READ_TIMEOUT", default=20.0)
# The retry policy (integration/retry.py): seconds to wait after the 1st, 2nd, ... failed attempt, for deliveries
# and inbound processing alike. Only the fault suite shortens it (tests/faults/); production keeps the default.
RETRY_SCHEDULE = tuple(env.list("RETRY_SCHEDULE", cast=int, default=[30, 120, 600, 1800, 7200, 21600, 43200]))
# How long a worker's claim on a delivery or an inbound event lasts: longer than the calls one task can make
# (two sends of connect + read timeout), so a live claim never expires; a dead worker's work is retried after it.
WORK_LEASE_SECONDS = env.int("WORK_LEASE_SECONDS", default=120)
# Per-connection ceiling of Rule calls a minute (integration/rule/budget.py explains the default).
RULE_CALLS_PER_MINUTE = env.int("RULE_CALLS_PER_MINUTE", default=60)
INBOUND_MAX_BODY_BYTES = env.int("INBOUND_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INBOUND_MAX_BODY_BYTES * 2, 2621440)
SIGNATURE_TOLERANCE_SECONDS = env.int("SIGNATURE_TOLERANCE_SECONDS", default=300)
RETENTION_DAYS = env.int("RETENTION_DAYS", default=90)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# A connection is "failing" (and its alert addresses are told) at this many failed or retried attempts an hour.
ALERT_FAILURES_PER_HOUR = env.int("ALERT_FAILURES_PER_HOUR", default=10)

# Email (alerts). Without EMAIL_HOST the messages go to the log (console backend); EMAIL_BACKEND overrides.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "var" / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="bridge@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
