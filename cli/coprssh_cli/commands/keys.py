"""The SSH keys `resubmit` sends: key lines, public key files, GitHub and FAS accounts, saved keys."""

from __future__ import annotations

import argparse
from pathlib import Path

from coprssh_cli import ssh as sshlib
from coprssh_cli.context import Context, UsageError, account_of

# Ten keys of the longest line the server accepts (8 KiB).
MAX_KEY_FILE = 10 * 8 * 1024


def ssh_keys(ctx: Context) -> tuple[list[str], list[str]]:
    """The key lines and references `resubmit` sends, and what to tell the user about them.

    Key options allow SSH by themselves; `--ssh` alone offers the caller's usual public key.
    """
    args = ctx.args
    keys = [key for key in args.ssh_keys or [] if key.strip()]
    files = [Path(name) for name in args.ssh_key_files or []]
    references = [*(args.github or []), *(args.fas or [])]
    notes: list[str] = []
    wanted = (
        "--ssh-on-failure"
        if getattr(args, "ssh_on_failure", False)
        else "--ssh"
        if getattr(args, "ssh", False)
        else ""
    )
    if wanted and not (keys or files or references or args.saved_keys):
        default = sshlib.default_key_file()
        if default is None:
            folder = sshlib.ssh_folder() or Path("~/.ssh")
            raise UsageError(
                f"{wanted} needs a public key and none of {folder}/"
                + f", {folder}/".join(sshlib.DEFAULT_KEY_FILES)
                + " exists: give --key FILE (a .pub file), --github USER or --fas USER (the keys "
                "that account publishes), or --saved-keys (the keys saved on your profile)"
            )
        files.append(default)
    for path in files:
        text = read_public_keys(path)
        prints = [found for line in text.splitlines() if (found := sshlib.fingerprint(line))]
        if not text:
            raise UsageError(f"{path} holds no public key")
        keys.append(text)
        notes.append(f"SSH keys from {path}: {', '.join(prints) or 'none recognized'}")
    if references:
        keys.append(" ".join(references))
        notes.append(f"SSH keys of {', '.join(references)}")
    if args.saved_keys:
        notes.append("SSH keys saved on your profile")
    return keys, notes


def read_public_keys(path: Path) -> str:
    """The public keys in `path`; a private key never leaves this machine."""
    path = path.expanduser()
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise UsageError(f"{path} is too large to be a public key file")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"{path} is a private key; give the public one ({path}.pub)")
    return text.strip()


def add_key_options(parser: argparse.ArgumentParser, *, ssh: bool = True) -> None:
    """The options that allow SSH (`resubmit --ssh`, and `--ssh-on-failure`) and say with which keys."""
    if ssh:
        parser.add_argument(
            "--ssh", action="store_true", help="run it on a builder you can log in to as root"
        )
    parser.add_argument(
        "--ssh-on-failure",
        action="store_true",
        help="keep the builder of a phase that fails for you to log in to (with the keys the key options "
        "give, or your usual public key); on success nothing changes and no key is deployed",
    )
    parser.add_argument(
        "--key",
        "--ssh-key-file",
        dest="ssh_key_files",
        action="append",
        metavar="FILE",
        help="a public key file such as ~/.ssh/id_ed25519.pub (repeat for more)",
    )
    for option, provider, account in (("--github", "GitHub", "GitHub"), ("--fas", "FAS", "Fedora")):
        parser.add_argument(
            option,
            action="append",
            type=account_of(provider),
            metavar="USER",
            help=f"the public keys of this {account} account (repeat for more)",
        )
    parser.add_argument("--saved-keys", action="store_true", help="the keys saved on your profile")
    parser.add_argument(
        "--ssh-key",
        dest="ssh_keys",
        action="append",
        metavar="KEY",
        help="a public key line, or GitHub:USER / FAS:USER (repeat for more)",
    )
