"""The providers this process uses, built once from settings (see the Providers section).

`writer()`, `video()` and `lipsync()` return the configured adapter, or the offline one when no
base URL is set (lip sync has no offline stand-in: `lipsync()` is None and the stage is skipped
visibly). Each role keeps one instance, so its pooled client, bucket, breaker and stats live as
long as the process; `health()` reads them for the provider health panel.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import overload
from urllib.parse import urlsplit

from django.conf import settings

from studio.providers.animatic import RenderOptions
from studio.providers.base import ChatProvider, ImageProvider, JobProvider, SpeechProvider
from studio.providers.lipsync_http import LipSyncConfig, LipSyncHTTP
from studio.providers.local_animatic import LocalAnimatic
from studio.providers.local_writer import LocalWriter
from studio.providers.openai_chat import ChatConfig, OpenAICompatibleChat
from studio.providers.resilience import (
    CircuitBreaker,
    Guard,
    RetryPolicy,
    TokenBucket,
    forget_guard,
)
from studio.providers.resilience import health as guard_health
from studio.providers.shared_limits import share

_built: dict[str, tuple[str, object]] = {}


def provider_name(base_url: str, explicit: str = "") -> str:
    """The name prices are looked up by: set explicitly, or the vendor's domain
    (api.deepseek.com -> deepseek); loopback and bare addresses are "self-hosted"."""
    if explicit:
        return explicit.strip().lower()
    host = (urlsplit(base_url).hostname or "").lower()
    parts = [p for p in host.split(".") if p]
    if not parts or host in ("localhost",) or host.replace(".", "").isdigit() or ":" in host:
        return "self-hosted"
    if host.endswith("googleapis.com"):
        return "google"
    return parts[-2] if len(parts) >= 2 else parts[0]


def _guard(role: str, name: str, config: dict) -> Guard:
    """The provider's limits: shared by every worker through Redis when REDIS_URL is set."""
    label = f"{role}:{name}"
    return share(
        Guard(
            label,
            bucket=TokenBucket(rate=config["rate_per_s"], burst=config["burst"]),
            concurrency=config["concurrency"],
            breaker=CircuitBreaker(name=label, **settings.PROVIDER_BREAKER),
            retry=RetryPolicy(**settings.PROVIDER_RETRY),
        )
    )


def _cached(role: str, config: dict, build):
    key = repr(sorted(config.items()))
    held = _built.get(role)
    if held is None or held[0] != key:
        held = (key, build())
        _built[role] = held
    return held[1]


def _http_fields(config: dict, name: str) -> dict:
    return dict(
        name=name,
        base_url=config["base_url"],
        model=config["model"],
        api_key=config["api_key"],
        timeout_s=config["timeout_s"],
        retry_after_cap_s=settings.PROVIDER_RETRY["retry_after_cap_s"],
    )


def writer() -> ChatProvider:
    config = settings.PROVIDER_WRITER
    if not config["base_url"]:
        return _cached("writer", {"local": True}, LocalWriter)
    name = provider_name(config["base_url"], config["provider"])

    def build() -> OpenAICompatibleChat:
        return OpenAICompatibleChat(
            ChatConfig(
                **_http_fields(config, name),
                json_mode=config["json_mode"],
                stream_usage=config["stream_usage"],
            ),
            guard=_guard("writer", name, config),
        )

    return _cached("writer", config, build)


# VIDEO_API -> (module, config class, adapter class); imported when chosen.
VIDEO_ADAPTERS = {
    "openai_videos": ("studio.providers.video_http", "VideoConfig", "VideoJobsHTTP"),
    "ark": ("studio.providers.video_ark", "ArkConfig", "ArkVideo"),
    "fal": ("studio.providers.video_fal", "FalConfig", "FalVideo"),
    "comfyui": ("studio.providers.video_comfyui", "ComfyConfig", "ComfyVideo"),
}


def video() -> JobProvider:
    config = settings.PROVIDER_VIDEO
    if not config["base_url"]:
        local = {"dir": str(settings.ANIMATIC_DIR), "preset": settings.ANIMATIC_PRESET}
        return _cached(
            "video",
            local,
            lambda: LocalAnimatic(
                output_dir=settings.ANIMATIC_DIR,
                options=RenderOptions(preset=settings.ANIMATIC_PRESET),
            ),
        )
    name = provider_name(config["base_url"], config["provider"])
    module_name, config_name, adapter_name = VIDEO_ADAPTERS[config.get("api", "openai_videos")]

    def build() -> JobProvider:
        module = importlib.import_module(module_name)
        config_class = getattr(module, config_name)
        # The settings only one wire format reads (ComfyUI's workflow, Ark's resolution).
        own = {"workflow": "", "resolution": "720p", "generate_audio": True}
        extra = {
            name: config.get(name, default)
            for name, default in own.items()
            if name in _fields(config_class)
        }
        return getattr(module, adapter_name)(
            config_class(
                **_http_fields(config, name),
                durations_s=tuple(config["durations_s"]),
                max_reference_images=config["max_reference_images"],
                poll_s=config["poll_s"],
                **extra,
            ),
            guard=_guard("video", name, config),
        )

    return _cached("video", config, build)


# SPEECH_API -> (module, config class, adapter class); imported when chosen.
SPEECH_ADAPTERS = {
    "openai": ("studio.providers.speech_openai", "SpeechConfig", "OpenAISpeech"),
    "elevenlabs": ("studio.providers.speech_elevenlabs", "ElevenLabsConfig", "ElevenLabsSpeech"),
}
OFFLINE_SPEECH = "espeak-ng"  # the offline voice's name among the speech services


def speech_api() -> str:
    """The speech service the studio speaks with: SPEECH_API when SPEECH_BASE_URL is set,
    else the offline voice ("espeak-ng")."""
    config = settings.PROVIDER_SPEECH
    return config.get("api", "openai") if config["base_url"] else OFFLINE_SPEECH


@overload
def speech() -> SpeechProvider: ...


@overload
def speech(api: str) -> SpeechProvider | None: ...


def speech(api: str = ""):
    """The studio's speech service (no `api`): the configured one, or the offline espeak-ng
    voice without a base URL. With `api` ("espeak-ng", "openai", "elevenlabs"), that service
    if this studio can speak with it: the offline voice always, a remote one only when it is
    SPEECH_API with SPEECH_BASE_URL set (None otherwise)."""
    studio = speech_api()
    if api and api not in (OFFLINE_SPEECH, studio):
        return None  # a remote service this studio is not configured for
    if (api or studio) == OFFLINE_SPEECH:
        from studio.providers.speech_espeak import EspeakSpeech

        # Its own slot: asking for it never drops the remote service's client and stats.
        return _cached("speech_offline", {"local": True}, EspeakSpeech)
    config = settings.PROVIDER_SPEECH
    name = provider_name(config["base_url"], config["provider"])
    module_name, config_name, adapter_name = SPEECH_ADAPTERS[config.get("api", "openai")]

    def build() -> SpeechProvider:
        module = importlib.import_module(module_name)
        return getattr(module, adapter_name)(
            getattr(module, config_name)(**_http_fields(config, name)),
            guard=_guard("speech", name, config),
        )

    return _cached("speech", config, build)


# IMAGE_API -> (module, config class, adapter class); imported when chosen.
IMAGE_ADAPTERS = {
    "openai": ("studio.providers.image_openai", "ImageConfig", "OpenAIImages"),
    "fal": ("studio.providers.image_fal", "FalImageConfig", "FalImages"),
    "comfyui": ("studio.providers.image_comfyui", "ComfyImageConfig", "ComfyImages"),
}


def image() -> ImageProvider:
    """The keyframe service: IMAGE_API at IMAGE_BASE_URL, or the offline composed still."""
    config = settings.PROVIDER_IMAGE
    if not config["base_url"]:
        from studio.providers.local_still import LocalStill

        return _cached("image", {"local": True}, LocalStill)
    name = provider_name(config["base_url"], config["provider"])
    module_name, config_name, adapter_name = IMAGE_ADAPTERS[config.get("api", "openai")]

    def build() -> ImageProvider:
        module = importlib.import_module(module_name)
        config_class = getattr(module, config_name)
        own = {"workflow": "", "poll_s": 2.0, "max_reference_images": 0}
        extra = {
            name: config.get(name, default)
            for name, default in own.items()
            if name in _fields(config_class)
        }
        return getattr(module, adapter_name)(
            config_class(**_http_fields(config, name), **extra),
            guard=_guard("image", name, config),
        )

    return _cached("image", config, build)


def _fields(config_class) -> set[str]:
    return {field.name for field in dataclasses.fields(config_class)}


def lipsync() -> JobProvider | None:
    config = settings.PROVIDER_LIPSYNC
    if not config["base_url"]:
        return None
    name = provider_name(config["base_url"], config["provider"])

    def build() -> LipSyncHTTP:
        return LipSyncHTTP(
            LipSyncConfig(**_http_fields(config, name), poll_s=config["poll_s"]),
            guard=_guard("lipsync", name, config),
        )

    return _cached("lipsync", config, build)


def health() -> list[dict]:
    """Live state of every remote provider used in this process (offline ones need none)."""
    return guard_health()


def forget() -> None:
    """Drop the built providers and their live stats (tests that change settings)."""
    for _key, provider in _built.values():
        guard = getattr(provider, "guard", None)
        if guard is not None:
            forget_guard(guard.name)
    _built.clear()
