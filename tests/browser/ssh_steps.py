"""Steps the SSH browser tests share: a failed build to start from, key pairs, a real ssh client.

Everything here acts as a user does (the web forms, the `ssh` command a page gives); only
`builder_of` and `release_ssh_builders` look at the service as its operator would.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Service, ssh_keygen

SPECS = Path(__file__).resolve().parents[1] / "builds" / "specs"
CHROOT = f"fedora-rawhide-{platform.machine()}"
# A build runs in seconds on a local builder; a fresh SSH builder takes a few more.
BUILD_TIMEOUT_MS = 120_000
READY_TIMEOUT_MS = 120_000
SSH_TIMEOUT = 60


@dataclass(frozen=True)
class KeyPair:
    """A key pair from the real ssh-keygen: its public line, private key file and fingerprint."""

    public: str
    private: Path

    @property
    def fingerprint(self) -> str:
        """`SHA256:…` as ssh-keygen -l shows it."""
        blob = base64.b64decode(self.public.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def key_pair(directory: Path, key_type: str, comment: str) -> KeyPair:
    """A new key pair in a directory of its own."""
    home = directory / f"key-{secrets.token_hex(3)}"
    home.mkdir(parents=True)
    public = ssh_keygen(home, key_type, comment)
    (private,) = [path for path in home.iterdir() if path.suffix != ".pub"]
    return KeyPair(public=public, private=private)


def submit_build(
    page: Any, user: str, *, spec: str = "check-fails.spec", keep_for: KeyPair | None = None
) -> int:
    """A new project of `user` with one chroot, and a build of `spec` submitted through the form.

    With `keep_for`, "keep the builder for SSH if this build fails" is ticked with that key.
    The page is left on the build's page; the build's number is returned.
    """
    name = f"ssh-{secrets.token_hex(3)}"
    page.goto("/projects/new/")
    page.get_by_label("Name").fill(name)
    page.locator(".chroot-group", has_text=CHROOT.rsplit("-", 1)[0]).get_by_label(platform.machine()).check()
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(rf"/projects/{user}/{name}/$"))
    page.goto(f"/projects/{user}/{name}/build/")
    page.get_by_label("Spec file or source RPM", exact=True).set_input_files(str(SPECS / spec))
    if keep_for is not None:
        keys = page.get_by_label("Public SSH keys")
        # The keys belong to the box: shown only while it is ticked.
        expect(keys).to_be_hidden()
        page.get_by_label("Keep the builder for SSH if this build fails").check()
        expect(keys).to_be_visible()
        keys.fill(keep_for.public)
        expect(page.locator("#key-preview ul.preview > li")).to_have_text(
            f"line 1: ssh-ed25519 · 256 bits · {keep_for.fingerprint} · {keep_for.public.split()[2]}"
        )
    page.get_by_role("button", name="Submit build").click()
    expect(page).to_have_url(re.compile(r"/builds/\d+/$"))
    return int(re.findall(r"/builds/(\d+)/$", page.url)[0])


def failed_build(page: Any, user: str) -> int:
    """A build of `user` whose %check fails, once its page says so."""
    build_id = submit_build(page, user)
    expect(page.locator('[data-field="build-state"]')).to_have_text("failed", timeout=BUILD_TIMEOUT_MS)
    return build_id


def resubmit_with_ssh(page: Any, build_id: int, keys: str) -> int:
    """Resubmit `build_id` with SSH for `keys` (the failed chroots, as the form chooses); the new build."""
    page.goto(f"/builds/{build_id}/resubmit-ssh/")
    page.get_by_label("Public SSH keys").fill(keys)
    page.get_by_role("button", name="Resubmit with SSH").click()
    expect(page).not_to_have_url(re.compile(rf"/builds/{build_id}/"))
    expect(page).to_have_url(re.compile(r"/builds/\d+/$"))
    return int(re.findall(r"/builds/(\d+)/$", page.url)[0])


def watch_for_reloads(page: Any) -> None:
    """Mark the page: `assert_not_reloaded` fails if it was loaded again since."""
    page.evaluate("window.__noReload = 1")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__noReload") == 1, "the page was loaded again"


def ssh_config(directory: Path, key: KeyPair, *, known_hosts: Path | None = None) -> Path:
    """A client config that logs in with `key` alone and never asks.

    `ssh -F` hands the config to the ssh that `-J` starts for the gateway, which the options
    of the command line do not reach. Without `known_hosts`, host keys are not checked.
    """
    checking = (
        [f"UserKnownHostsFile {known_hosts}", "StrictHostKeyChecking yes"]
        if known_hosts is not None
        else ["UserKnownHostsFile /dev/null", "StrictHostKeyChecking no"]
    )
    lines = [
        "Host *",
        f"    IdentityFile {key.private}",
        "    IdentitiesOnly yes",
        "    IdentityAgent none",
        "    BatchMode yes",
        "    ConnectTimeout 15",
        "    LogLevel ERROR",
        *(f"    {line}" for line in checking),
    ]
    path = directory / f"ssh-config-{secrets.token_hex(3)}"
    path.write_text("\n".join(lines) + "\n")
    return path


def ssh(command: str, key: KeyPair, directory: Path, *remote: str) -> subprocess.CompletedProcess[str]:
    """Run the `ssh …` command a page gave, as its user would (with `key`), and `remote` on the builder."""
    words = shlex.split(command)
    assert words[0] == "ssh", command
    config = ssh_config(directory, key)
    # -i and -o as the user adds them; -F so that the gateway hop uses them as well.
    options = ["-F", str(config), "-i", str(key.private), "-o", "StrictHostKeyChecking=no"]
    options += ["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    return subprocess.run(
        ["ssh", *options, *words[1:], *remote], capture_output=True, text=True, timeout=SSH_TIMEOUT
    )


def release_ssh_builders(service: Service, user: str) -> str:
    """End every SSH builder of `user` still held or waiting, as an operator would; what was ended."""
    return service.shell(
        "from builders import services\n"
        "from builders.models import Lease\n"
        f"leases = Lease.objects.filter(owner__username={user!r}, ssh=True).exclude(state=Lease.State.ENDED)\n"
        "for lease in leases:\n"
        "    services.release_lease(lease_id=lease.pk, via=services.Via(source='admin'))\n"
        "    print('released', lease.pk, lease.state)\n"
    )


def builder_of(service: Service, lease_id: int, *, until: str = "", wait: float = 30) -> str:
    """`<lease state> <end reason> <builder state>`, once the builder reaches `until` (or `wait` runs out)."""
    return service.shell(
        "import time\n"
        "from builders.models import Builder, Lease\n"
        f"lease = Lease.objects.get(pk={lease_id})\n"
        f"deadline = time.monotonic() + {wait}\n"
        "while True:\n"
        "    state = Builder.objects.get(pk=lease.builder_id).state\n"
        f"    if state == {until!r} or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.25)\n"
        "lease.refresh_from_db()\n"
        "print(lease.state, lease.end_reason, state)\n"
    ).strip()
