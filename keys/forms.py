"""Forms of the keys pages; validation itself lives in keys.parser and keys.services."""

from __future__ import annotations

from django import forms

from keys.parser import MAX_LINE_BYTES


class SavedKeyForm(forms.Form):
    title = forms.CharField(
        max_length=100,
        required=False,
        help_text="A name for this key, e.g. “work laptop”. Defaults to the key's comment.",
    )
    public_key = forms.CharField(
        # A little more than one line may hold, so an over-long line reaches the parser
        # and gets its precise message instead of the form's generic one.
        max_length=MAX_LINE_BYTES * 2,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One public key: the contents of a file such as ~/.ssh/id_ed25519.pub.",
    )
