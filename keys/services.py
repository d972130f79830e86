"""State changes of the keys app: saved keys, and turning user input into keys to deploy."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from coprssh.exceptions import NotFoundError, ServiceError
from keys.fetchers import FetchError, fetch_reference
from keys.models import SavedKey
from keys.parser import InvalidKey, LineError, PublicKey, clean_comment, parse_keys, parse_single_key

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 100


class KeyInputError(ServiceError):
    """Keys given by a user were refused; `details` lists each bad line."""

    def __init__(self, message: str, *, field: str, errors: list[LineError] | None = None) -> None:
        details = [{"line": e.line_no, "message": e.message} for e in errors] if errors else None
        super().__init__(message, field=field, details=details)
        self.errors = errors or []


@dataclass
class ResolvedKeys:
    """Keys ready to deploy, with where each came from (pasted, saved, GitHub:…, FAS:…)."""

    keys: list[PublicKey] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, key: PublicKey, source: str) -> bool:
        if any(k.fingerprint == key.fingerprint for k in self.keys):
            return False
        self.keys.append(key)
        self.sources.append(source)
        return True


def _clean_title(title: str, key: PublicKey) -> str:
    if any(not c.isprintable() for c in title):
        raise KeyInputError("The title contains control characters.", field="title")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        raise KeyInputError(f"The title may have at most {MAX_TITLE_CHARS} characters.", field="title")
    return clean_comment(title or key.comment or f"{key.label} key")


def add_saved_key(*, user: User, title: str, public_key: str) -> SavedKey:
    """Validate one key and save it on `user`'s profile."""
    try:
        key = parse_single_key(public_key, min_rsa_bits=settings.COPRSSH_MIN_RSA_BITS)
    except InvalidKey as exc:
        raise KeyInputError(f"This key is not accepted: {exc}.", field="public_key") from None
    title = _clean_title(title, key)
    try:
        with transaction.atomic():
            # The user row is the lock that makes the saved-key limit hold under races.
            list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
            if SavedKey.objects.filter(user=user).count() >= settings.COPRSSH_MAX_SAVED_KEYS:
                raise KeyInputError(
                    f"You can save at most {settings.COPRSSH_MAX_SAVED_KEYS} keys; delete one first.",
                    field="public_key",
                )
            if SavedKey.objects.filter(user=user, fingerprint=key.fingerprint).exists():
                raise _duplicate(key)
            saved = SavedKey.objects.create(
                user=user,
                title=title,
                key_type=key.key_type,
                bits=key.bits,
                data=key.data,
                fingerprint=key.fingerprint,
            )
    except IntegrityError:
        # Lost a race with an identical insert that committed first.
        raise _duplicate(key) from None
    log.info("user %s saved key %s", user.pk, key.fingerprint)
    return saved


def _duplicate(key: PublicKey) -> KeyInputError:
    return KeyInputError(f"You have already saved this key ({key.fingerprint}).", field="public_key")


def delete_saved_key(*, user: User, key_id: int) -> SavedKey:
    """Delete one of `user`'s saved keys; someone else's key is reported as not found."""
    with transaction.atomic():
        saved = SavedKey.objects.select_for_update().filter(user=user, pk=key_id).first()
        if saved is None:
            raise NotFoundError("No such saved key.")
        saved.delete()
    log.info("user %s deleted saved key %s", user.pk, saved.fingerprint)
    return saved


def remove_saved_keys(
    *, key_ids: list[int], operator: User, remote_addr: str | None = None
) -> list[SavedKey]:
    """An operator deletes saved keys of any users; each deletion is logged with who asked.

    Keys already gone are skipped. The keys app keeps no audit table of its own (builders'
    audit log is out of its reach), so the record is this log line, and the admin's LogEntry.
    """
    with transaction.atomic():
        removed = list(SavedKey.objects.select_for_update().filter(pk__in=key_ids).order_by("pk"))
        SavedKey.objects.filter(pk__in=[key.pk for key in removed]).delete()
    for key in removed:
        log.info(
            "operator %s (%s, from %s) deleted saved key %s %r of user %s",
            operator.pk,
            operator.get_username(),
            remote_addr or "unknown address",
            key.fingerprint,
            key.title,
            key.user_id,
        )
    return removed


def _input_error(errors: list[LineError], field: str) -> KeyInputError:
    if len(errors) == 1:
        message = f"Not accepted: {errors[0]}."
    else:
        message = f"{len(errors)} lines are not accepted: " + "; ".join(str(e) for e in errors[:5])
        message += "; …" if len(errors) > 5 else "."
    return KeyInputError(message, field=field, errors=errors)


def resolve_keys(
    *,
    text: str,
    user: User | None = None,
    use_saved_keys: bool = False,
    field: str = "ssh_public_keys",
) -> ResolvedKeys:
    """Turn pasted lines, `GitHub:`/`FAS:` references and saved keys into the keys to deploy.

    Fetches references over the network, so callers run it outside transactions.
    Raises KeyInputError when any line or reference fails, or the total passes the limit.
    """
    limit = settings.COPRSSH_MAX_KEYS
    result = parse_keys(text, max_keys=None, min_rsa_bits=settings.COPRSSH_MIN_RSA_BITS)
    if result.errors:
        raise _input_error(result.errors, field)
    resolved = ResolvedKeys()
    for key in result.keys:
        resolved.add(key, "pasted")
    for error in result.duplicates:
        resolved.notes.append(str(error))
    fetch_errors: list[LineError] = []
    for reference in result.references:
        try:
            fetched = fetch_reference(reference)
        except FetchError as exc:
            fetch_errors.append(LineError(reference.line_no, exc.message))
            continue
        for key in fetched:
            resolved.add(key, str(reference))
    if fetch_errors:
        raise _input_error(fetch_errors, field)
    if use_saved_keys and user is not None:
        saved = list(SavedKey.objects.filter(user=user))
        if not saved:
            raise KeyInputError(
                "You have no saved keys; add one on your profile first.", field="use_saved_keys"
            )
        for row in saved:
            resolved.add(row.as_key(), f"saved: {row.title}")
    if len(resolved.keys) > limit:
        raise KeyInputError(
            f"{len(resolved.keys)} different keys given; at most {limit} can be deployed to a builder.",
            field=field,
        )
    return resolved


@dataclass
class PreviewLine:
    """One line of a key preview: a key, a duplicate, a resolved reference or an error."""

    line: int
    status: str  # "key" | "duplicate" | "reference" | "error"
    message: str = ""
    keys: list[PublicKey] = field(default_factory=list)


def preview_keys(*, text: str, fetch_references: bool = True) -> list[PreviewLine]:
    """Show what each line of `text` would deploy, without storing anything."""
    result = parse_keys(text, max_keys=settings.COPRSSH_MAX_KEYS, min_rsa_bits=settings.COPRSSH_MIN_RSA_BITS)
    lines = [PreviewLine(n, "key", keys=[k]) for n, k in zip(result.key_lines, result.keys, strict=True)]
    lines += [PreviewLine(e.line_no, "error", e.message) for e in result.errors]
    lines += [PreviewLine(d.line_no, "duplicate", d.message) for d in result.duplicates]
    for reference in result.references:
        if not fetch_references:
            lines.append(PreviewLine(reference.line_no, "reference", f"{reference}: fetched when submitted"))
            continue
        try:
            fetched = fetch_reference(reference)
        except FetchError as exc:
            lines.append(PreviewLine(reference.line_no, "error", exc.message))
        else:
            lines.append(PreviewLine(reference.line_no, "reference", str(reference), keys=fetched))
    return sorted(lines, key=lambda item: item.line)
