from django.apps import AppConfig


class KeysConfig(AppConfig):
    """SSH public keys: parsing, validation, saved keys and GitHub/FAS references."""

    name = "keys"
    verbose_name = "SSH keys"
