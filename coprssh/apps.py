from django.apps import AppConfig


class CoprsshConfig(AppConfig):
    """The project package: accounts pages, the API root and shared plumbing."""

    name = "coprssh"
    verbose_name = "coprssh"
