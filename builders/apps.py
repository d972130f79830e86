from django.apps import AppConfig


class BuildersConfig(AppConfig):
    """Pools, builders and leases; knows nothing about builds."""

    name = "builders"

    def ready(self) -> None:
        from builders import checks  # noqa: F401 - registers the system checks
