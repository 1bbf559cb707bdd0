import pytest

from studio.providers import registry
from studio.providers.lipsync_http import LipSyncHTTP
from studio.providers.local_animatic import LocalAnimatic
from studio.providers.local_writer import LocalWriter
from studio.providers.openai_chat import OpenAICompatibleChat
from studio.providers.video_http import VideoJobsHTTP


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


def test_it_works_offline_by_default():
    assert isinstance(registry.writer(), LocalWriter)
    assert isinstance(registry.video(), LocalAnimatic)
    assert registry.lipsync() is None
    assert registry.writer() is registry.writer()  # one instance per process


def test_it_builds_remote_providers_from_settings(settings):
    settings.PROVIDER_WRITER = {
        **settings.PROVIDER_WRITER,
        "base_url": "https://api.deepseek.com",
        "api_key": "sk-from-env",
    }
    settings.PROVIDER_VIDEO = {
        **settings.PROVIDER_VIDEO,
        "api": "openai_videos",
        "base_url": "https://api.openai.com/v1",
        "model": "sora-2",
    }
    settings.PROVIDER_LIPSYNC = {
        **settings.PROVIDER_LIPSYNC,
        "base_url": "https://api.sync.so/v2",
        "provider": "Sync",
    }
    writer, video, lipsync = registry.writer(), registry.video(), registry.lipsync()
    assert isinstance(writer, OpenAICompatibleChat) and writer.name == "deepseek"
    assert writer.model == "deepseek-chat" and "sk-from-env" not in repr(writer)
    assert isinstance(video, VideoJobsHTTP) and video.capabilities.durations_s == (4, 8, 12)
    assert isinstance(lipsync, LipSyncHTTP) and lipsync.name == "sync"
    assert writer.guard.bucket.rate == settings.PROVIDER_WRITER["rate_per_s"]
    names = {snapshot["name"] for snapshot in registry.health()}
    assert {"writer:deepseek", "video:openai", "lipsync:sync"} <= names


def test_it_rebuilds_when_settings_change(settings):
    first = registry.writer()
    settings.PROVIDER_WRITER = {**settings.PROVIDER_WRITER, "base_url": "http://localhost:11434/v1"}
    second = registry.writer()
    assert second is not first and second.name == "self-hosted"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.openai.com/v1", "openai"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "google"),
        ("http://localhost:11434/v1", "self-hosted"),
        ("http://127.0.0.1:8000/v1", "self-hosted"),
    ],
)
def test_it_names_providers_for_prices(url, name):
    assert registry.provider_name(url) == name
    assert registry.provider_name(url, "Custom") == "custom"
