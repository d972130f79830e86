from django.apps import AppConfig


class BuildersConfig(AppConfig):
    """Pools, builders and leases; knows nothing about builds."""

    name = "builders"
