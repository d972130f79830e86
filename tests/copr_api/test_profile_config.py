"""The profile page shows a ready ~/.config/copr, and that file is all copr-cli needs."""

from __future__ import annotations

import html
import re

import pytest

from builds.models import Build
from builds.services import create_project
from tests.copr_api.conftest import HELLO_SPEC

pytestmark = pytest.mark.django_db(transaction=True)


def config_on_profile(client, user) -> str:
    client.force_login(user)
    page = client.get("/accounts/profile/").content.decode()
    match = re.search(r'<pre id="copr-config">(.*?)</pre>', page, re.S)
    assert match, page
    return html.unescape(match[1])


def test_the_profiles_config_lets_copr_cli_build(
    client, user, copr, live_server, settings, chroots, tmp_path
):
    settings.COPRSSH_PUBLIC_URL = live_server.url
    text = config_on_profile(client, user)
    assert "[copr-cli]\nlogin = alice\nusername = alice\n" in text
    assert f"copr_url = {live_server.url}\n" in text
    assert "encrypted = False" in text  # the live server speaks plain http
    config = tmp_path / "from-profile"
    config.write_text(text)
    create_project(owner=user, name="hello", chroots=chroots)
    result = copr("build", "--nowait", "hello", str(HELLO_SPEC), config=config)
    assert result.returncode == 0, result.stderr
    assert Build.objects.get().submitter == user


def test_an_https_service_needs_no_encrypted_line(client, user, settings):
    settings.COPRSSH_PUBLIC_URL = "https://copr.example.org"
    text = config_on_profile(client, user)
    assert "copr_url = https://copr.example.org\n" in text
    assert "encrypted" not in text
