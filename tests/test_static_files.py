"""No page makes the browser ask for a file that is not there: static references and the site icon.

Every `link href`, `script src` and `img src` under STATIC_URL on the main pages (the site's,
the operators' console and the API's) must be a file the static finders find, and so must each
`url(…)` of those stylesheets. Every page names its icon; /favicon.ico answers for the rest.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path
from posixpath import dirname, normpath

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client

from builders.models import Pool
from builds.models import Build

CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""")
SOURCE_TAGS = {"link": "href", "script": "src", "img": "src", "source": "src"}


class References(HTMLParser):
    """The URLs a page makes the browser load, and the icons it names."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.icons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        url = values.get(SOURCE_TAGS.get(tag, ""), "")
        if url:
            self.urls.append(url)
        if tag == "link" and "icon" in values.get("rel", "").split():
            self.icons.append(values.get("href", ""))


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def static_path(url: str) -> str | None:
    """The static file a URL names (without query or fragment), or None when it is not under STATIC_URL."""
    prefix = static("")
    url = url.split("#")[0].split("?")[0]
    return url[len(prefix) :] if url.startswith(prefix) else None


def missing_files(html: str) -> list[str]:
    """Static files the page, or a stylesheet it loads, names and that the finders do not find."""
    missing = []
    for url in references(html).urls:
        path = static_path(url)
        if path is None:
            continue
        found = finders.find(path)
        if not found:
            missing.append(path)
        elif path.endswith(".css"):
            missing += missing_in_stylesheet(path, Path(str(found)).read_text(errors="replace"))
    return missing


def local_urls(html: str) -> list[str]:
    """URLs of this site, outside STATIC_URL, that the page makes the browser load."""
    return [
        url
        for url in references(html).urls
        if url.startswith("/") and not url.startswith("//") and static_path(url) is None
    ]


def elsewhere(html: str) -> list[str]:
    """URLs on other sites that the page makes the browser load or connect to."""
    return [url for url in references(html).urls if url.startswith(("http:", "https:", "//"))]


def missing_in_stylesheet(path: str, css: str) -> list[str]:
    missing = []
    for ref in CSS_URL.findall(css):
        ref = ref.split("#")[0].split("?")[0]
        if not ref or ref.startswith(("data:", "http:", "https:", "//")):
            continue
        target = static_path(ref) if ref.startswith("/") else normpath(f"{dirname(path)}/{ref}")
        if target is None or not finders.find(target):
            missing.append(f"{ref} (from {path})")
    return missing


@pytest.fixture
def demo(db, settings, tmp_path) -> dict[str, Build]:
    """The demo's accounts, pool, projects and builds, as `bin/run` makes them."""
    settings.COPRSSH_STORAGE_DIR = tmp_path / "storage"
    call_command("demo_data", stdout=StringIO())
    return {b.project.name: b for b in Build.objects.select_related("project")}


def client_of(django_user_model, username: str) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.get(username=username))
    return client


def site_pages(demo: dict[str, Build]) -> list[str]:
    build = demo["failing-check"].pk
    return [
        "/",
        "/projects/",
        "/projects/new/",
        "/projects/demo/failing-check/",
        "/projects/demo/failing-check/build/",
        f"/builds/{build}/",
        f"/builds/{build}/resubmit/",
        f"/builds/{build}/resubmit-ssh/",
        "/accounts/profile/",
        "/results/demo/failing-check/",
        "/api/v1/",
        "/api/v1/docs/",
        "/api/v1/redoc/",
    ]


def console_pages() -> list[str]:
    pool = Pool.objects.get(name="local").pk
    return [
        "/admin/",
        "/admin/builders/pool/",
        f"/admin/builders/pool/{pool}/change/",
        "/admin/builders/lease/",
        "/admin/builders/auditevent/",
        "/admin/auth/user/add/",
    ]


def test_the_checker_reports_a_missing_file_and_a_missing_stylesheet_reference():
    # The control: the checks below would pass vacuously if this found nothing.
    html = (
        f'<link rel="stylesheet" href="{static("coprssh/site.css")}">'
        f'<script src="{static("coprssh/no-such.js")}"></script>'
        '<img src="https://example.org/elsewhere.png">'
    )
    assert missing_files(html) == ["coprssh/no-such.js"]
    assert elsewhere(html) == ["https://example.org/elsewhere.png"]
    assert missing_in_stylesheet("admin/css/base.css", "a { background: url('../img/nope.svg') }") == [
        "../img/nope.svg (from admin/css/base.css)"
    ]
    assert missing_in_stylesheet("admin/css/base.css", "a { background: url(../img/search.svg) }") == []


@pytest.mark.django_db
def test_every_static_file_the_site_and_api_pages_name_exists(client, demo, django_user_model):
    demo_client = client_of(django_user_model, "demo")
    checked = 0
    for url in ["/accounts/login/", *site_pages(demo)]:
        who = client if url == "/accounts/login/" else demo_client
        response = who.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        html = response.content.decode()

        assert missing_files(html) == [], url
        assert references(html).icons, f"{url} names no icon: the browser asks for /favicon.ico"
        # Nothing comes from another site (web fonts, CDNs): the pages work offline and leak nothing.
        assert elsewhere(html) == [], url
        # What else the page loads from this site (Swagger UI's script) is there too.
        for loaded in local_urls(html):
            assert who.get(loaded).status_code == 200, f"{loaded} (loaded by {url})"
        checked += sum(1 for u in references(html).urls if static_path(u) is not None)
    assert checked > 30  # the pages were read, and they do load static files


@pytest.mark.django_db
def test_every_static_file_the_operators_console_names_exists(client, demo, django_user_model):
    operator = client_of(django_user_model, "operator")
    for who, url in [(client, "/admin/login/"), *((operator, url) for url in console_pages())]:
        response = who.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()

        assert missing_files(html) == [], url
        assert [static_path(icon) for icon in references(html).icons] == ["coprssh/favicon.svg"], url


@pytest.mark.django_db
def test_the_site_icon_is_a_static_file_every_site_page_names(client):
    html = client.get("/accounts/login/").content.decode()

    assert references(html).icons == [static("coprssh/favicon.svg")]
    assert finders.find("coprssh/favicon.svg")


@pytest.mark.django_db
def test_favicon_ico_answers_with_the_site_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert "max-age=" in response["Cache-Control"]
    icon = Path(str(finders.find("coprssh/favicon.svg"))).read_bytes()
    assert response.content == icon
    assert icon.startswith(b"<svg ")
    assert client.head("/favicon.ico").status_code == 200


@pytest.mark.django_db
def test_favicon_ico_refuses_writes(client):
    assert client.post("/favicon.ico").status_code == 405
