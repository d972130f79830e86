"""Forms of the builds pages; the checks themselves live in builds.sources, builds.services and keys."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.validators import ProhibitNullCharactersValidator
from django.forms.boundfield import BoundWidget

from builders.services import MAX_PROLONG_HOURS
from builds.models import SOURCE_FIELDS, Build, BuildChroot, Chroot, State
from builds.selectors import default_ssh_chroots
from builds.sources import (
    MAX_COMMITTISH,
    MAX_SPEC_PATH,
    MAX_URL,
    SourceError,
    check_scm,
    check_upload,
    check_url,
)
from keys.parser import MAX_INPUT_BYTES
from keys.services import KeyInputError, resolve_keys


def _chroot_field(
    chroots: Iterable[Chroot], *, initial: list[str] | None = None, help_text: str = ""
) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        label="Chroots",
        choices=[(c.name, c.name) for c in chroots],
        initial=initial,
        widget=forms.CheckboxSelectMultiple,
        help_text=help_text,
        error_messages={"required": "Choose at least one chroot."},
    )


def _source_text(*, max_length: int, placeholder: str, **kwargs: Any) -> forms.CharField:
    """A text field of one kind of source; the other kinds leave it empty."""
    attrs = {"placeholder": placeholder, "spellcheck": "false"}
    return forms.CharField(
        required=False, max_length=max_length, widget=forms.TextInput(attrs=attrs), **kwargs
    )


def _release_order(chroot: Chroot) -> tuple[str, tuple[int, int, str], str]:
    # fedora-42 before fedora-43 before fedora-rawhide; epel-9 before epel-10.
    version = (0, int(chroot.version), "") if chroot.version.isdigit() else (1, 0, chroot.version)
    return (chroot.os, version, chroot.arch)


class ProjectForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Letters, digits and . _ + - ; the project is then known as <you>/<name>.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    description = forms.CharField(max_length=5000, required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chroots = sorted(Chroot.objects.filter(active=True), key=_release_order)
        self.fields["chroots"] = _chroot_field(self.chroots)

    def chroot_groups(self) -> list[tuple[str, list[tuple[BoundWidget, str]]]]:
        """The chroot checkboxes grouped by `<os>-<version>`, each with its architecture."""
        boxes = {box.data["value"]: box for box in self["chroots"]}
        return [
            (group, [(boxes[c.name], c.arch) for c in members])
            for group, members in groupby(self.chroots, key=lambda c: f"{c.os}-{c.version}")
        ]


class SshKeysForm(forms.Form):
    """The keys of a form that deploys them: pasted lines, GitHub:/FAS: references, saved keys.

    `resolve()` turns them into `cleaned_data["keys"]`; each refused line becomes its own error
    under the text area. The resubmit-with-SSH form and the keep-on-failure part of the build
    and resubmit forms share it, and the page partial builds/_ssh_keys.html that shows it.
    """

    ssh_public_keys = forms.CharField(
        label="Public SSH keys",
        required=False,
        strip=False,  # leading blank lines must keep the line numbers the messages name
        # Longer than the parser allows, so that the parser says how long is too long.
        max_length=MAX_INPUT_BYTES * 2,
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                # One key per visual line, so that "line 3" in a message is the third line seen.
                "wrap": "off",
                "spellcheck": "false",
                "autocomplete": "off",
                "autocapitalize": "off",
                "placeholder": "ssh-ed25519 AAAAC3Nza… you@laptop\nGitHub:yourname FAS:yourname",
            }
        ),
        help_text=(
            "One public key per line (the contents of ~/.ssh/id_ed25519.pub, not the private key), "
            "and/or GitHub:user and FAS:user references, several to a line."
        ),
    )
    use_saved_keys = forms.BooleanField(label="Use my saved keys", required=False)

    def __init__(self, *args: Any, user: User, saved_keys: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.saved_keys = saved_keys
        # The parser names a NUL with its line number; Django's own check would not.
        keys = self.fields["ssh_public_keys"]
        keys.validators = [v for v in keys.validators if not isinstance(v, ProhibitNullCharactersValidator)]
        if saved_keys == 0:
            self.fields["use_saved_keys"].disabled = True

    def resolve(self) -> None:
        """Resolve the keys given into `cleaned_data["keys"]`, or add an error per refused line."""
        data = self.cleaned_data
        if "ssh_public_keys" in self.errors:
            return
        text = data.get("ssh_public_keys", "")
        use_saved = bool(data.get("use_saved_keys"))
        try:
            resolved = resolve_keys(
                text=text, user=self.user, use_saved_keys=use_saved, field="ssh_public_keys"
            )
        except KeyInputError as exc:
            field = exc.field if exc.field in self.fields else None
            for message in [str(error) for error in exc.errors] or [exc.message]:
                self.add_error(field, message)
            return
        if not resolved.keys:
            self.add_error(
                "ssh_public_keys",
                "Give at least one public SSH key (or a GitHub:/FAS: account with keys), "
                "or use your saved keys.",
            )
        data["keys"] = resolved.keys
        data["key_notes"] = resolved.notes


class KeepOnFailureForm(SshKeysForm):
    """A submission that may keep a failed phase's builder for SSH: the checkbox, and the keys it needs."""

    ssh_on_failure = forms.BooleanField(
        label="Keep the builder for SSH if this build fails",
        required=False,
        help_text="If a phase fails, its builder is kept for you to log in to with the keys below "
        "(within your SSH quota); if the build succeeds, nothing changes and no key is deployed.",
    )

    def clean_keep_on_failure(self) -> None:
        """Resolve the keys when the box is ticked; they are ignored when it is not."""
        if self.cleaned_data.get("ssh_on_failure"):
            self.resolve()
        else:
            self.cleaned_data["keys"] = None


class BuildForm(KeepOnFailureForm):
    """One form for the three kinds of source; `source_type` says which part counts."""

    source_type = forms.ChoiceField(
        choices=Build.SourceType.choices, initial=Build.SourceType.UPLOAD, widget=forms.RadioSelect
    )
    source_file = forms.FileField(
        label="Spec file or source RPM",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".spec,.src.rpm"}),
        help_text="A .spec without external sources, or a .src.rpm.",
    )
    clone_url = _source_text(
        label="Clone URL",
        max_length=MAX_URL,
        placeholder="https://src.example.org/hello.git",
        help_text="A public http(s) git repository.",
    )
    committish = _source_text(
        max_length=MAX_COMMITTISH,
        placeholder="main",
        help_text="A branch, tag or commit; empty means the default branch.",
    )
    spec = _source_text(
        label="Spec path",
        max_length=MAX_SPEC_PATH,
        placeholder="hello.spec",
        help_text="The spec file's path inside the repository.",
    )
    url = _source_text(
        label="URL of a .src.rpm", max_length=MAX_URL, placeholder="https://example.org/hello-1.0-1.src.rpm"
    )

    def __init__(
        self, *args: Any, chroots: Iterable[Chroot], user: User, saved_keys: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, user=user, saved_keys=saved_keys, **kwargs)
        chroots = list(chroots)
        self.fields["chroots"] = _chroot_field(chroots, initial=[c.name for c in chroots])

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        self.clean_keep_on_failure()
        kind = data.get("source_type", "")  # missing when not one of the choices
        if any(name in self.errors for name in SOURCE_FIELDS.get(kind, ())):
            return data  # the field's own message says enough
        try:
            if kind == Build.SourceType.UPLOAD:
                upload = data.get("source_file")
                if not upload:
                    self.add_error("source_file", "Choose a .spec or .src.rpm file.")
                else:
                    data["source"] = check_upload(upload)
            elif kind == Build.SourceType.SCM:
                data["source"] = check_scm(
                    clone_url=data["clone_url"], committish=data["committish"], spec=data["spec"]
                )
            elif kind == Build.SourceType.URL:
                data["source"] = check_url(url=data["url"])
        except SourceError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


def _rebuilt_chroots(build_chroots: Iterable[BuildChroot]) -> forms.MultipleChoiceField:
    """The chroots of a resubmission, starting with the failed ones, or all; the help says which."""
    build_chroots = list(build_chroots)
    failed = [bc.chroot.name for bc in build_chroots if bc.state == State.FAILED]
    return _chroot_field(
        [bc.chroot for bc in build_chroots],
        initial=failed or [bc.chroot.name for bc in build_chroots],
        help_text="The failed chroots are chosen; build in others too if you like."
        if failed
        else "No chroot failed, so all are chosen.",
    )


def _ssh_chroots(build_chroots: Iterable[BuildChroot]) -> forms.MultipleChoiceField:
    """The chroots of an SSH resubmission, starting with the failed ones, or the first one.

    Each chosen chroot takes an SSH builder, and so one of the user's few slots: one click must
    not take them all.
    """
    build_chroots = list(build_chroots)
    chosen = default_ssh_chroots(build_chroots)
    any_failed = any(bc.state == State.FAILED for bc in build_chroots)
    return _chroot_field(
        [bc.chroot for bc in build_chroots],
        initial=[bc.chroot.name for bc in chosen],
        help_text="The failed chroots are chosen."
        if any_failed
        else "No chroot failed, so only the first one is chosen.",
    )


class ResubmitForm(KeepOnFailureForm):
    def __init__(
        self, *args: Any, build_chroots: Iterable[BuildChroot], user: User, saved_keys: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, user=user, saved_keys=saved_keys, **kwargs)
        self.fields["chroots"] = _rebuilt_chroots(build_chroots)

    def clean(self) -> dict[str, Any]:
        super().clean()
        self.clean_keep_on_failure()
        return self.cleaned_data


class ResubmitSshForm(SshKeysForm):
    """Resubmit with SSH: which chroots (unless the SRPM phase reruns) and the keys to deploy."""

    def __init__(
        self,
        *args: Any,
        build_chroots: Iterable[BuildChroot],
        srpm_reruns: bool,
        user: User,
        saved_keys: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, user=user, saved_keys=saved_keys, **kwargs)
        self.srpm_reruns = srpm_reruns
        if not srpm_reruns:
            self.fields["chroots"] = _ssh_chroots(build_chroots)

    def clean(self) -> dict[str, Any]:
        super().clean()
        self.resolve()
        return self.cleaned_data


class ProlongForm(forms.Form):
    hours = forms.IntegerField(min_value=1, max_value=MAX_PROLONG_HOURS, initial=1)
