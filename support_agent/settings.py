"""Django settings for supportmem, read from the environment (see README, "Configuration")."""

from __future__ import annotations

from pathlib import Path

from support_agent.env import (
    data_dir_from_env,
    embedded_database_placeholder,
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    stored_secret_key,
)

# Settings only declare: importing them starts no process and writes no file. The entry points prepare the
# data folder and start the embedded database (support_agent/bootstrap.py).
BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = data_dir_from_env()

DEBUG = env_bool("DEBUG", False)
# Unset SECRET_KEY: one is generated once and kept in the data folder, so sessions survive restarts.
SECRET_KEY = env_str("SECRET_KEY") or stored_secret_key(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Served over HTTPS (docs/deployment.md): SUPPORTMEM_HTTPS=true turns on the redirect, secure cookies and a
# year of HSTS; each can be set on its own. Behind a TLS-terminating proxy, trust its X-Forwarded-Proto.
_HTTPS = env_bool("SUPPORTMEM_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SUPPORTMEM_SSL_REDIRECT", _HTTPS)
SESSION_COOKIE_SECURE = env_bool("SUPPORTMEM_SECURE_COOKIES", _HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SUPPORTMEM_HSTS_SECONDS", 31_536_000 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SUPPORTMEM_HSTS_INCLUDE_SUBDOMAINS", _HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SUPPORTMEM_HSTS_PRELOAD", False)  # a commitment to browsers: opt in
if env_bool("SUPPORTMEM_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /widget/demo/ signs the demo customer's identity for any visitor: only `make run`'s local demo turns it on.
SUPPORTMEM_DEMO = env_bool("SUPPORTMEM_DEMO", False)

INSTALLED_APPS = [
    "support_agent.admin_config.SupportmemAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from the package: /api/docs/ works offline
    "simple_history",
    "tickets",
    "memory",
    "support_agent",
]

MIDDLEWARE = [
    "support_agent.middleware.RequestContextMiddleware",
    "tickets.input_safety.UnstorableInputMiddleware",  # NUL / lone surrogates in path, query, headers: 400
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "support_agent.urls"
WSGI_APPLICATION = "support_agent.wsgi.application"
ASGI_APPLICATION = "support_agent.asgi.application"

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

# Database: DATABASE_URL, or the embedded PostgreSQL with pgvector under SUPPORTMEM_DATA_DIR (started by the
# entry points, which export its URL).
DATABASES = {"default": parse_database_url(env_str("DATABASE_URL") or embedded_database_placeholder(DATA_DIR))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in development and tests
STATIC_ROOT = DATA_DIR / "static"  # created by the entry points (whitenoise warns on every request without it)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Celery: Redis when REDIS_URL is set; otherwise tasks run in-process (eagerly).
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"  # a host named: kombu warns about a bare memory://
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Helpdesk webhooks (tickets/intake.py, tickets/outbound.py): the sweeper re-dispatches events stuck
# unprocessed (and replies due a retry); an event failing this many times is marked dead.
SUPPORTMEM_WEBHOOK_SWEEP_SECONDS = env_int("SUPPORTMEM_WEBHOOK_SWEEP_SECONDS", 30)
SUPPORTMEM_WEBHOOK_STUCK_SECONDS = env_int("SUPPORTMEM_WEBHOOK_STUCK_SECONDS", 60)
SUPPORTMEM_WEBHOOK_MAX_ATTEMPTS = env_int("SUPPORTMEM_WEBHOOK_MAX_ATTEMPTS", 5)
# Without a broker, `serve` starts `process_webhooks` beside gunicorn and sets this for gunicorn: intake then
# only stores the event and answers, and that process (not the request) processes it. Unset (tests, a bare
# runserver), tasks run in-process in the request as before.
SUPPORTMEM_LOCAL_WORKER = env_bool("SUPPORTMEM_LOCAL_WORKER", False)
# Background processing (Celery workers, process_webhooks) runs at this nice value, so on a shared machine
# the web server's intake (the SLO is time to 2xx) gets the CPU first and processing catches up after.
SUPPORTMEM_WORKER_NICE = env_int("SUPPORTMEM_WORKER_NICE", 10)
SUPPORTMEM_OUTBOUND_MAX_ATTEMPTS = env_int("SUPPORTMEM_OUTBOUND_MAX_ATTEMPTS", 6)
SUPPORTMEM_OUTBOUND_RETRY_BASE_SECONDS = env_int("SUPPORTMEM_OUTBOUND_RETRY_BASE_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "webhooks-sweep": {"task": "tickets.webhooks_sweep", "schedule": float(SUPPORTMEM_WEBHOOK_SWEEP_SECONDS)},
    # Rows whose embedding task was lost (broker down, worker killed) are embedded on the next sweep.
    "embed-pending": {"task": "memory.embed_pending", "schedule": 300.0},
    # Agent runs recorded but never started (broker down when the message arrived) are queued again.
    "requeue-agent-runs": {"task": "support_agent.requeue_runs", "schedule": 60.0},
}
SUPPORTMEM_AGENT_REQUEUE_SECONDS = env_int("SUPPORTMEM_AGENT_REQUEUE_SECONDS", 120)
# A running run that has not finished a step for this long, though its session lives, is failed by the same
# sweep (its session ended): longer than one model call with all its retries.
SUPPORTMEM_AGENT_RUN_LEASE_SECONDS = env_int("SUPPORTMEM_AGENT_RUN_LEASE_SECONDS", 900)

# The agent's language model: OpenAI or any OpenAI-compatible server; the offline model otherwise.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
SUPPORTMEM_MODEL = env_str("SUPPORTMEM_MODEL", "gpt-4o-mini")
SUPPORTMEM_CONTEXT_WINDOW = env_int("SUPPORTMEM_CONTEXT_WINDOW", 16000)
# Tokens of recent messages kept in every prompt (organisations can override); the rest is left to recall search.
SUPPORTMEM_RECENT_MESSAGES_TOKENS = env_int("SUPPORTMEM_RECENT_MESSAGES_TOKENS", 2000)
SUPPORTMEM_LLM_TIMEOUT = env_int("SUPPORTMEM_LLM_TIMEOUT", 60)
SUPPORTMEM_LLM_MAX_RETRIES = env_int("SUPPORTMEM_LLM_MAX_RETRIES", 4)

# Embeddings: "local" (all-MiniLM-L6-v2 shipped in a package, as int8 ONNX), "local-torch" (the same in float
# torch, the old baseline) or "openai" (text-embedding-3-small, 384 dims).
SUPPORTMEM_EMBEDDINGS = env_str("SUPPORTMEM_EMBEDDINGS", "local")
if SUPPORTMEM_EMBEDDINGS not in {"local", "local-torch", "openai"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SUPPORTMEM_EMBEDDINGS must be 'local', 'local-torch' or 'openai'")

# true (the default): one customer's memory search reads its vector features and its rows' facts on other database
# connections (worker threads', up to 4 per process) while the request's connection ranks by full text; outside a
# transaction only. false: every read on the request's connection, one after the other (docs/performance.md, "Search
# latency (session 8)": p95 0.87x at load 2.6 on this 2-core machine, for more connections and a little more work).
SUPPORTMEM_SEARCH_CONCURRENT_READS = env_bool("SUPPORTMEM_SEARCH_CONCURRENT_READS", True)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "support_agent.exceptions.api_exception_handler",
    # JSON only, depth-limited, NUL-free: a form or multipart body is a 415 (tickets/input_safety.py).
    "DEFAULT_PARSER_CLASSES": ["tickets.input_safety.SafeJSONParser"],
    # Throttle rates ("N/second|minute|hour|day"); an empty value turns that throttle off (benchmarks do).
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env_str("SUPPORTMEM_THROTTLE_API_KEY", "6000/minute") or None,
        "widget_customer": env_str("SUPPORTMEM_THROTTLE_WIDGET_CUSTOMER", "30/minute") or None,
        "widget_ip": env_str("SUPPORTMEM_THROTTLE_WIDGET_IP", "120/minute") or None,
    },
    # Proxies in front of the app that append to X-Forwarded-For; 0 trusts only the socket's address.
    "NUM_PROXIES": env_int("SUPPORTMEM_NUM_PROXIES", 0),
}
# Throttle counters: shared through Redis when there is one; per process otherwise.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
SPECTACULAR_SETTINGS = {
    "TITLE": "supportmem API",
    "DESCRIPTION": "Customer-support memory: customers, tickets, memory blocks, archival search, agent turns.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": "tickets.models.Ticket.Status",
        "AgentRunStatusEnum": "support_agent.models.AgentRun.Status",
    },
}

# CORS: the widget API answers it itself, per organisation (its widget_allowed_origins), in support_agent/api.py;
# nothing else is meant for browsers on other origins.

LOGIN_URL = "/admin/login/"

# LOG_FORMAT=json: one JSON object per line with the request, organisation, customer, event, run and delivery
# ids bound where the line was written (telemetry/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("LOG_FORMAT must be 'plain' or 'json'")
# /metrics answers only with Authorization: Bearer <this>; empty turns it off.
SUPPORTMEM_METRICS_TOKEN = env_str("SUPPORTMEM_METRICS_TOKEN")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "telemetry.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: a history import of 10,000 tickets would print 10,000 lines.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
