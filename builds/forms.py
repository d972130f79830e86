"""Forms of the builds pages; the checks themselves live in builds.sources and builds.services."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from django import forms
from django.forms.boundfield import BoundWidget

from builds.models import Build, BuildChroot, Chroot, State
from builds.sources import SourceError, check_scm, check_upload, check_url


def _chroot_field(chroots: Iterable[Chroot], *, label: str, help_text: str = "") -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        label=label,
        choices=[(c.name, c.name) for c in chroots],
        widget=forms.CheckboxSelectMultiple,
        help_text=help_text,
        error_messages={"required": "Choose at least one chroot."},
    )


def _release_order(chroot: Chroot) -> tuple:
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
        self.fields["chroots"] = _chroot_field(self.chroots, label="Chroots")

    def chroot_groups(self) -> list[tuple[str, list[tuple[BoundWidget, str]]]]:
        """The chroot checkboxes grouped by `<os>-<version>`, each with its architecture."""
        boxes = {box.data["value"]: box for box in self["chroots"]}
        return [
            (group, [(boxes[c.name], c.arch) for c in members])
            for group, members in groupby(self.chroots, key=lambda c: f"{c.os}-{c.version}")
        ]


SOURCE_FIELDS = {
    Build.SourceType.UPLOAD: ("source_file",),
    Build.SourceType.SCM: ("clone_url", "committish", "spec"),
    Build.SourceType.URL: ("url",),
}


class BuildForm(forms.Form):
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
    clone_url = forms.CharField(
        label="Clone URL",
        required=False,
        max_length=1000,
        widget=forms.TextInput(
            attrs={"placeholder": "https://src.example.org/hello.git", "spellcheck": "false"}
        ),
        help_text="A public http(s) git repository.",
    )
    committish = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "main", "spellcheck": "false"}),
        help_text="A branch, tag or commit; empty means the default branch.",
    )
    spec = forms.CharField(
        label="Spec path",
        required=False,
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "hello.spec", "spellcheck": "false"}),
        help_text="The spec file's path inside the repository.",
    )
    url = forms.CharField(
        label="URL of a .src.rpm",
        required=False,
        max_length=1000,
        widget=forms.TextInput(
            attrs={"placeholder": "https://example.org/hello-1.0-1.src.rpm", "spellcheck": "false"}
        ),
    )

    def __init__(self, *args: Any, chroots: Iterable[Chroot], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        chroots = list(chroots)
        self.fields["chroots"] = _chroot_field(chroots, label="Chroots")
        self.fields["chroots"].initial = [c.name for c in chroots]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("source_type")
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


class ResubmitForm(forms.Form):
    def __init__(self, *args: Any, build_chroots: Iterable[BuildChroot], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        build_chroots = list(build_chroots)
        failed = [bc.chroot.name for bc in build_chroots if bc.state == State.FAILED]
        self.fields["chroots"] = _chroot_field(
            [bc.chroot for bc in build_chroots],
            label="Chroots",
            help_text=(
                "The failed chroots are chosen; build in others too if you like."
                if failed
                else "No chroot failed, so all are chosen."
            ),
        )
        self.fields["chroots"].initial = failed or [bc.chroot.name for bc in build_chroots]
