"""Forms of the account pages; the checks that matter are in coprssh.services."""

from __future__ import annotations

from django import forms

from coprssh.models import time_zones


class AccountSettingsForm(forms.Form):
    """The profile's e-mail part: the address, the SSH builder mails, the time zone of their times."""

    email = forms.EmailField(
        label="E-mail address",
        required=False,
        max_length=254,
        help_text="Where mails about your SSH builders go.",
    )
    email_ssh_builders = forms.BooleanField(
        label="Mail me when an SSH builder of mine is ready, and before it expires",
        required=False,
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        # A callable: the zones are read when a form is made, not when this module is imported.
        choices=lambda: [("", "UTC (not set)"), *((name, name) for name in sorted(time_zones()))],
        help_text="Times in the mails are given in it; without one, in UTC.",
    )
