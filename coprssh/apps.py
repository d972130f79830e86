from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoprsshConfig(AppConfig):
    """The project package: accounts pages, the API root and shared plumbing."""

    name = "coprssh"
    verbose_name = "coprssh"

    def ready(self) -> None:
        from coprssh import checks  # noqa: F401 - registers the system checks


class OperatorsAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with the operators' console (coprssh.admin.OperatorsSite) as its site."""

    default = False  # named explicitly in INSTALLED_APPS
    default_site = "coprssh.admin.OperatorsSite"
