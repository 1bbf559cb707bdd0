import pytest
from django.test import Client

from tests.factories import PASSWORD, create_drama, create_user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is deliberately slow; hundreds of test logins do not need that.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploads of each test land in its own folder, never in var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def producer(db):
    return create_user(username="producer-1")


@pytest.fixture
def drama(producer):
    return create_drama(owner=producer)


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def producer_client(producer):
    return login(producer)
