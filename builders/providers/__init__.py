"""Machine providers: `local` (sshd sandboxes on loopback) and `openstack`."""

from .base import HostKeyPair, Machine, Provider, ProviderError, generate_host_key

__all__ = ["HostKeyPair", "Machine", "Provider", "ProviderError", "generate_host_key"]
