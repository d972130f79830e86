from django.apps import AppConfig


class CoprApiConfig(AppConfig):
    """Fedora Copr's APIv3 (a subset) at /api_3/, so copr-cli and python-copr drive coprssh."""

    name = "copr_api"
    verbose_name = "Copr APIv3"
