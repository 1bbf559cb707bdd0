"""Drama Studio settings: one file, driven by the environment.

Every value has a default that works on one machine with no keys and no network
(SQLite under var/, in-memory channel layer). See .env.example for the full list.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("STUDIO_VAR_DIR", BASE_DIR / "var"))


def local_secret_key() -> str:
    """A key generated once for this checkout and kept in var/ (ignored by git)."""
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "studio",
    "studio.jobs",
    "characters",
    "dramas",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every studio page requires login; public paths are listed on the views themselves.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "studio.middleware.HtmxMessagesMiddleware",
]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"
WSGI_APPLICATION = None

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
            # `{% url %}` without a resolver walk per link (studio/templatetags/urls.py).
            "builtins": ["studio.templatetags.urls"],
        },
    },
]

# --- Caches ---------------------------------------------------------------------------------
# `fragments`: parts of pages drawn once per state of what they show (their key names it, so
# no entry is ever stale; studio/templatetags/fragments.py), in each process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "fragments": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "fragments",
        "TIMEOUT": 3600,
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
}

# --- Database -------------------------------------------------------------------------------
DEFAULT_SQLITE_PATH = VAR_DIR / "studio.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Django's backend, with each process keeping its connections between requests.
    DATABASES["default"]["ENGINE"] = "studio.sqlite"
    # Writers take the lock at BEGIN (no upgrade deadlocks between the web and the worker),
    # WAL lets readers run beside one writer, busy_timeout waits instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            "PRAGMA busy_timeout=20000;"
            "PRAGMA foreign_keys=ON;"
        ),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "studio.layers.InMemoryChannelLayer"}}

# --- Jobs ----------------------------------------------------------------------------------
# `manage.py studio` runs a worker inside the web process unless this is off (scale-out
# deployments run `manage.py studio_worker` processes instead).
STUDIO_EMBEDDED_WORKER = env_bool("STUDIO_EMBEDDED_WORKER", True)
# Worker tuning (studio.jobs.worker.WorkerConfig); `studio_worker` options override these.
STUDIO_WORKER = {
    "concurrency": int(os.environ.get("STUDIO_WORKER_CONCURRENCY", 8)),
    "lease_s": float(os.environ.get("STUDIO_JOB_LEASE_S", 30)),
    "grace_s": float(os.environ.get("STUDIO_JOB_GRACE_S", 8)),
}
# Finished jobs (done, failed, cancelled) are deleted by the workers this many days after they
# finished; 0 keeps them forever.
STUDIO_JOB_RETENTION_DAYS = float(os.environ.get("STUDIO_JOB_RETENTION_DAYS", 30))
# Modules that register job handlers, besides every app's `jobs` module.
STUDIO_JOB_MODULES = env_list("STUDIO_JOB_MODULES", "")

# --- Auth ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- i18n ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media ----------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Media is never served by URL: views stream it after checking drama membership.
MEDIA_URL = "/media-not-public/"
# Local copies of media kept in object storage, for decoding and face scoring (studio.media).
MEDIA_CACHE_DIR = Path(os.environ.get("MEDIA_CACHE_DIR", VAR_DIR / "media-cache"))
# `filesystem` (MEDIA_ROOT) or `s3`: any S3-compatible store through django-storages (the `s3`
# extra). Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, read by boto3.
MEDIA_STORAGE = os.environ.get("MEDIA_STORAGE", "filesystem").strip().lower()
if MEDIA_STORAGE not in ("filesystem", "s3"):
    raise ImproperlyConfigured(f"MEDIA_STORAGE must be filesystem or s3, not {MEDIA_STORAGE!r}.")
if MEDIA_STORAGE == "s3":
    if not os.environ.get("S3_BUCKET"):
        raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs S3_BUCKET.")
    STORAGES = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ["S3_BUCKET"],
                "endpoint_url": os.environ.get("S3_ENDPOINT_URL") or None,
                "region_name": os.environ.get("S3_REGION") or None,
                "location": os.environ.get("S3_PREFIX", "media"),
                # Private objects; the studio streams them after its membership check.
                "default_acl": "private",
                "querystring_auth": True,
                # Never overwrite: stored names are content-bound (see studio.media).
                "file_overwrite": False,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

# --- Uploads -------------------------------------------------------------------------------
UPLOAD_MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", 20 * 1024 * 1024))
UPLOAD_MAX_PIXELS = int(os.environ.get("UPLOAD_MAX_PIXELS", 40_000_000))
UPLOAD_MAX_FILES = int(os.environ.get("UPLOAD_MAX_FILES", 20))
# The stored copy is capped on its long side: enough for face models and previews.
REFERENCE_MAX_SIDE = int(os.environ.get("REFERENCE_MAX_SIDE", 4096))
# A request may carry UPLOAD_MAX_FILES files at the limit; Django streams big files to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Django's own hard stop sits above ours so a producer gets our message, not a bare 400.
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES * 5

# --- Security ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if env_bool("HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Demo ----------------------------------------------------------------------------------
DEMO_USERNAME = os.environ.get("DEMO_USERNAME", "producer")
DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "drama-studio")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The studio command prints where it serves; Daphne's start-up chatter is noise.
        "daphne": {"level": "WARNING"},
    },
}

# --- Providers -----------------------------------------------------------------------------
# Generation services (studio/providers; README "Providers"). With no base URL a role uses its
# offline provider: the LocalWriter for scripts, the LocalAnimatic for video; lip sync has none
# and its stage is skipped visibly. API keys come only from the environment; never log them.


def provider_env(prefix: str, *, model: str, rate: float, burst: int, concurrency: int) -> dict:
    """<PREFIX>_BASE_URL, _API_KEY, _MODEL, _PROVIDER (the name prices are looked up by; by
    default the vendor's domain), _TIMEOUT_S, _RATE_PER_S, _BURST, _CONCURRENCY."""

    def env(name: str, default) -> str:
        return os.environ.get(f"{prefix}_{name}") or str(default)

    return {
        "base_url": env("BASE_URL", "").strip(),
        "api_key": env("API_KEY", "").strip(),
        "model": env("MODEL", model),
        "provider": env("PROVIDER", ""),
        "timeout_s": float(env("TIMEOUT_S", 120)),
        "rate_per_s": float(env("RATE_PER_S", rate)),
        "burst": int(env("BURST", burst)),
        "concurrency": int(env("CONCURRENCY", concurrency)),
    }


PROVIDER_WRITER = provider_env("WRITER", model="deepseek-chat", rate=2, burst=5, concurrency=4)
# "json_schema" sends the chapter schema as response_format (OpenAI, vLLM, llama.cpp);
# "json_object" asks for JSON only (DeepSeek, Gemini); "none" for servers that reject both.
PROVIDER_WRITER["json_mode"] = os.environ.get("WRITER_JSON_MODE", "json_object")
# Usage in the last stream chunk (stream_options.include_usage); off for servers without it.
PROVIDER_WRITER["stream_usage"] = env_bool("WRITER_STREAM_USAGE", True)
# The wire format of VIDEO_BASE_URL: `ark` (Seedance on BytePlus ModelArk / Volcengine Ark), `fal`
# (the fal queue), `comfyui` (a self-hosted ComfyUI), `openai_videos` (/v1/videos look-alikes).
VIDEO_APIS = ("ark", "fal", "comfyui", "openai_videos")
VIDEO_API = os.environ.get("VIDEO_API", "ark").strip().lower()
if VIDEO_API not in VIDEO_APIS:
    raise ImproperlyConfigured(
        f"VIDEO_API must be one of {', '.join(VIDEO_APIS)}, not {VIDEO_API!r}."
    )
VIDEO_DEFAULT_MODELS = {
    "ark": "dreamina-seedance-2-0-260128",
    "fal": "fal-ai/kling-video/v2.1/standard/image-to-video",
    "comfyui": "wan2.2",
    "openai_videos": "sora-2",
}
PROVIDER_VIDEO = provider_env(
    "VIDEO", model=VIDEO_DEFAULT_MODELS[VIDEO_API], rate=2, burst=10, concurrency=8
)
PROVIDER_VIDEO["api"] = VIDEO_API
# Empty: the adapter's own capability table for the model decides.
PROVIDER_VIDEO["durations_s"] = [float(s) for s in env_list("VIDEO_DURATIONS", "")]
PROVIDER_VIDEO["max_reference_images"] = int(os.environ.get("VIDEO_MAX_REFERENCES", 0))
PROVIDER_VIDEO["poll_s"] = float(os.environ.get("VIDEO_POLL_S", 5))
# ComfyUI: the workflow (API format JSON) with the studio's placeholders; see the README.
PROVIDER_VIDEO["workflow"] = os.environ.get("VIDEO_WORKFLOW", "").strip()
# Ark: the output resolution (480p, 720p, 1080p: the price per second follows its pixels) and
# whether a model that can (Seedance 2.0) renders the soundtrack with the picture.
PROVIDER_VIDEO["resolution"] = os.environ.get("VIDEO_RESOLUTION", "720p").strip().lower()
PROVIDER_VIDEO["generate_audio"] = env_bool("VIDEO_GENERATE_AUDIO", True)
if PROVIDER_VIDEO["resolution"] not in ("480p", "720p", "1080p"):
    raise ImproperlyConfigured(
        f"VIDEO_RESOLUTION must be 480p, 720p or 1080p, not {PROVIDER_VIDEO['resolution']!r}."
    )
# A vendor render not finished this long after it was first submitted is cancelled at the
# vendor and its take fails, saying so.
VIDEO_MAX_RENDER_S = float(os.environ.get("VIDEO_MAX_RENDER_S", 1800))
# Speech: the wire format of SPEECH_BASE_URL, `openai` (POST /audio/speech: OpenAI, Kokoro-FastAPI,
# SiliconFlow and look-alikes) or `elevenlabs` (/v1/text-to-speech/{voice}/with-timestamps).
# Without a base URL the studio speaks with the offline espeak-ng draft voice.
SPEECH_APIS = ("openai", "elevenlabs")
SPEECH_API = os.environ.get("SPEECH_API", "openai").strip().lower()
if SPEECH_API not in SPEECH_APIS:
    raise ImproperlyConfigured(
        f"SPEECH_API must be one of {', '.join(SPEECH_APIS)}, not {SPEECH_API!r}."
    )
SPEECH_DEFAULT_MODELS = {"openai": "gpt-4o-mini-tts", "elevenlabs": "eleven_multilingual_v2"}
PROVIDER_SPEECH = provider_env(
    "SPEECH", model=SPEECH_DEFAULT_MODELS[SPEECH_API], rate=5, burst=10, concurrency=4
)
PROVIDER_SPEECH["api"] = SPEECH_API
# Images (storyboard keyframes): the wire format of IMAGE_BASE_URL, `openai` (POST
# /images/generations and /images/edits: OpenAI, Seedream on ModelArk, many proxies), `fal` (the fal
# queue) or `comfyui` (a self-hosted ComfyUI and an image workflow). Without a base URL the
# studio composes each keyframe offline from the cast's reference images.
IMAGE_APIS = ("openai", "fal", "comfyui")
IMAGE_API = os.environ.get("IMAGE_API", "openai").strip().lower()
if IMAGE_API not in IMAGE_APIS:
    raise ImproperlyConfigured(
        f"IMAGE_API must be one of {', '.join(IMAGE_APIS)}, not {IMAGE_API!r}."
    )
IMAGE_DEFAULT_MODELS = {
    "openai": "gpt-image-1",
    "fal": "fal-ai/flux-pro/kontext",
    "comfyui": "flux-dev",
}
PROVIDER_IMAGE = provider_env(
    "IMAGE", model=IMAGE_DEFAULT_MODELS[IMAGE_API], rate=2, burst=10, concurrency=4
)
PROVIDER_IMAGE["api"] = IMAGE_API
PROVIDER_IMAGE["max_reference_images"] = int(os.environ.get("IMAGE_MAX_REFERENCES", 0))
PROVIDER_IMAGE["poll_s"] = float(os.environ.get("IMAGE_POLL_S", 2))
PROVIDER_IMAGE["workflow"] = os.environ.get("IMAGE_WORKFLOW", "").strip()
PROVIDER_LIPSYNC = provider_env("LIPSYNC", model="lipsync-2", rate=2, burst=10, concurrency=8)
PROVIDER_LIPSYNC["poll_s"] = float(os.environ.get("LIPSYNC_POLL_S", 5))
# Circuit breaker: open after N consecutive failures, try again after recovery_s, close after
# M good trial calls. Retries: capped exponential backoff with full jitter; Retry-After wins,
# up to retry_after_cap_s.
PROVIDER_BREAKER = {
    "failures": int(os.environ.get("PROVIDER_BREAKER_FAILURES", 5)),
    "recovery_s": float(os.environ.get("PROVIDER_BREAKER_RECOVERY_S", 30)),
    "successes": int(os.environ.get("PROVIDER_BREAKER_SUCCESSES", 2)),
}
# How long a take waits, in a row, for a provider whose breaker stays open before it fails
# (waiting spends none of its attempts: the outage is not the take's fault).
PROVIDER_OUTAGE_MAX_S = float(os.environ.get("PROVIDER_OUTAGE_MAX_S", 6 * 3600))
PROVIDER_RETRY = {
    "max_attempts": int(os.environ.get("PROVIDER_RETRY_ATTEMPTS", 4)),
    "base_s": float(os.environ.get("PROVIDER_RETRY_BASE_S", 0.5)),
    "cap_s": float(os.environ.get("PROVIDER_RETRY_CAP_S", 20)),
    "retry_after_cap_s": float(os.environ.get("PROVIDER_RETRY_AFTER_CAP_S", 60)),
}
# The offline animatic: where renders go, and the x264 preset (speed against file size).
ANIMATIC_DIR = Path(os.environ.get("ANIMATIC_DIR", VAR_DIR / "animatics"))
ANIMATIC_PRESET = os.environ.get("ANIMATIC_PRESET", "veryfast")
# The episode masters' x264 preset (CRF 18 either way): slower presets make smaller files of the
# same quality, "superfast" exports quicker in larger ones. Not "ultrafast": it leaves out what
# makes the stream H.264 High, which the masters promise.
EXPORT_X264_PRESETS = ("superfast", "veryfast", "faster", "fast", "medium")
EXPORT_X264_PRESET = os.environ.get("EXPORT_X264_PRESET", "veryfast").strip().lower()
if EXPORT_X264_PRESET not in EXPORT_X264_PRESETS:
    raise ImproperlyConfigured(
        f"EXPORT_X264_PRESET must be one of {', '.join(EXPORT_X264_PRESETS)}, "
        f"not {EXPORT_X264_PRESET!r}."
    )
# httpx logs every request at INFO; the usage ledger already records each call.
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}

# --- Generation ---
# Ceiling on a chapter writer's answer (max_tokens); a reply cut at it is reported, not saved.
WRITER_MAX_TOKENS = int(os.environ.get("WRITER_MAX_TOKENS", 8000))

# --- Provider health panel ---
# Each job worker saves its providers' breaker, bucket and latency snapshot this often (0: off).
PROVIDER_HEALTH_PUBLISH_S = float(os.environ.get("PROVIDER_HEALTH_PUBLISH_S", 5))
