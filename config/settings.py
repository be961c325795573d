"""Settings, read from the environment (12-factor). See README "Configuration"."""

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE: another file instead of .env (the tests point it at an empty one to see the bare environment).
environ.Env.read_env(os.environ.get("ENV_FILE", str(BASE_DIR / ".env")), overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def required_secret(name: str, development_default: str) -> str:
    """A secret from the environment; with DEBUG off the service refuses to start without it (a constant from
    the repository would let anyone who reads it forge sessions or decrypt the stored secrets)."""
    value = env.str(name, default="").strip()
    if value:
        return value
    if DEBUG:
        return development_default
    raise ImproperlyConfigured(
        f"{name} is not set. With DEBUG off the service does not start without it: put it in the environment "
        "or the .env file (README: Configuration)."
    )


SECRET_KEY = required_secret("SECRET_KEY", "insecure-dev-key-change-me")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys, comma-separated, newest first. Anything that is not already a Fernet key is hashed into one,
# so a long random string works too. Only with DEBUG on may it be left out (then derived from SECRET_KEY).
FIELD_ENCRYPTION_KEYS = [
    k.strip()
    for k in required_secret(
        "FIELD_ENCRYPTION_KEY", base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    ).split(",")
    if k.strip()
]

# Behind a TLS proxy (README: Production settings). `check --deploy` is clean with the production .env there.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# "HTTP_X_FORWARDED_PROTO,https": trust the proxy's header that says the request came in over HTTPS. Set it
# only when a proxy that overwrites this header is in front of the service.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be HEADER,VALUE, e.g. HTTP_X_FORWARDED_PROTO,https")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])

# Rule and Centra are called only over https at public addresses; ALLOW_PRIVATE_UPSTREAMS=1 lets the fakes on
# loopback (and other private, loopback or link-local addresses) be called, over http too.
ALLOW_PRIVATE_UPSTREAMS = env.bool("ALLOW_PRIVATE_UPSTREAMS", default=False)

INSTALLED_APPS = [
    "config.admin.BridgeAdminConfig",  # django.contrib.admin with the bridge's own site (header, home, order)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
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
    # Last, as django-axes asks: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

# Admin login throttling (django-axes): after LOGIN_FAILURE_LIMIT failed logins for one username from one
# address, that pair is refused (429) for LOGIN_LOCKOUT_MINUTES; a successful login resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failed attempts only: no table of every admin login

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
    # ORM broker: the pusher's sleep when the queue is empty, i.e. the wait of a task arriving at an idle
    # cluster (avg half of it per hop; an event makes two hops). One indexed SELECT per poll while idle.
    "poll": 0.05,
    "bulk": env.int("Q_WORKERS", default=2),  # ORM broker: tasks taken per poll (Redis takes one at a time)
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
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
RULE_CALLS_PER_MINUTE = env.int("RULE_CALLS_PER_MINUTE", default=1200)
# The longest pacing wait a worker sleeps before a call; a longer one hands the delivery back, due at its slot.
RULE_PACING_MAX_SLEEP = env.float("RULE_PACING_MAX_SLEEP", default=2.0)
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

# After `connection rotate-token` (or the admin action) the old inbound URLs keep working this long.
TOKEN_ROTATION_GRACE_HOURS = env.float("TOKEN_ROTATION_GRACE_HOURS", default=24)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Inbound URL tokens are secrets: every line that could hold one shows it masked (`/centra/abcd****/events`).
    "filters": {"mask_tokens": {"()": "integration.logmask.MaskInboundTokens"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_tokens"]},
        # runserver's access log (Django's own handler and format, with the mask)
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["mask_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler (DEBUG only) would print 404 paths unmasked: everything goes to ours.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}
