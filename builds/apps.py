from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """Projects, builds and their chroots; runs them on builders leased from `builders`."""

    name = "builds"
