"""keys.services.resolve_keys: pasted lines, references and saved keys become the keys to deploy."""

from __future__ import annotations

import pytest

from keys.services import KeyInputError, add_saved_key, resolve_keys


@pytest.mark.django_db
def test_resolve_keys_combines_pasted_github_and_saved_keys_once_each(user, make_key, key_server):
    pasted, both, github_only, saved_too, saved_only = (make_key(f"mix-{i}") for i in range(5))
    key_server.github("alice", both, github_only, saved_too)
    add_saved_key(user=user, title="laptop", public_key=saved_too.public)
    add_saved_key(user=user, title="desktop", public_key=saved_only.public)
    text = f"{pasted.public}\n\n# my other key\n{both.public}\nGitHub:alice\n"

    resolved = resolve_keys(text=text, user=user, use_saved_keys=True)

    assert [k.fingerprint for k in resolved.keys] == [
        pasted.fingerprint,
        both.fingerprint,
        github_only.fingerprint,
        saved_too.fingerprint,
        saved_only.fingerprint,
    ]
    assert resolved.sources == ["pasted", "pasted", "GitHub:alice", "GitHub:alice", "saved: desktop"]
    assert [k.comment for k in resolved.keys[2:4]] == ["GitHub:alice", "GitHub:alice"]


@pytest.mark.django_db
def test_resolve_keys_fetches_several_references_on_one_line(make_key, key_server):
    github_key, fas_key = make_key("gh-1"), make_key("fas-1")
    key_server.github("alice", github_key)
    key_server.fas("alice", fas_key)

    resolved = resolve_keys(text="GitHub:alice FAS:alice github:ALICE")

    assert [k.fingerprint for k in resolved.keys] == [github_key.fingerprint, fas_key.fingerprint]
    assert resolved.sources == ["GitHub:alice", "FAS:alice"]
    assert key_server.requests == ["/gh/alice.keys", "/fas/alice/"]


@pytest.mark.django_db
def test_resolve_keys_notes_a_pasted_duplicate(make_key):
    key = make_key("dup")

    resolved = resolve_keys(text=f"{key.public}\n{key.public}")

    assert len(resolved.keys) == 1
    assert resolved.notes == ["line 2: the same key as line 1; given once"]


@pytest.mark.django_db
def test_resolve_keys_failing_reference_names_it_with_its_line(make_key, key_server):
    key_server.github("alice", make_key("gh-1"))
    text = f"{make_key('pasted').public}\nGitHub:alice\nGitHub:nobody\n"

    with pytest.raises(KeyInputError) as caught:
        resolve_keys(text=text)

    error = caught.value
    assert error.field == "ssh_public_keys"
    assert error.message == "Not accepted: line 3: GitHub:nobody: no such account (HTTP 404)."
    assert [(e.line_no, e.message) for e in error.errors] == [
        (3, "GitHub:nobody: no such account (HTTP 404)")
    ]
    assert error.as_data()["errors"] == [{"line": 3, "message": "GitHub:nobody: no such account (HTTP 404)"}]


@pytest.mark.django_db
def test_resolve_keys_reports_every_failing_reference(key_server):
    key_server.github("broken", status=500, body=b"oops")

    with pytest.raises(KeyInputError) as caught:
        resolve_keys(text="GitHub:nobody\nFAS:broken GitHub:broken")

    assert [(e.line_no, e.message) for e in caught.value.errors] == [
        (1, "GitHub:nobody: no such account (HTTP 404)"),
        (2, "FAS:broken: no such account (HTTP 404)"),
        (2, "GitHub:broken: the key server answered HTTP 500"),
    ]
    assert caught.value.message.startswith("3 lines are not accepted: line 1: GitHub:nobody")


@pytest.mark.django_db
def test_resolve_keys_bad_line_fetches_nothing(make_key, key_server):
    key_server.github("alice", make_key("gh-1"))

    with pytest.raises(KeyInputError) as caught:
        resolve_keys(text=f'GitHub:alice\ncommand="sh" {make_key("pasted").public}')

    assert [e.line_no for e in caught.value.errors] == [2]
    assert "options in front of the key" in caught.value.message
    assert key_server.requests == []


@pytest.mark.django_db
def test_resolve_keys_refuses_more_keys_than_the_limit(user, make_key, key_server, settings):
    settings.COPRSSH_MAX_KEYS = 3
    key_server.github("alice", make_key("gh-1"), make_key("gh-2"))
    add_saved_key(user=user, title="", public_key=make_key("saved").public)
    text = f"{make_key('pasted').public}\nGitHub:alice"

    with pytest.raises(KeyInputError) as caught:
        resolve_keys(text=text, user=user, use_saved_keys=True)

    assert caught.value.message == "4 different keys given; at most 3 can be deployed to a builder."
    assert caught.value.field == "ssh_public_keys"


@pytest.mark.django_db
def test_resolve_keys_counts_a_key_from_two_sources_once(user, make_key, key_server, settings):
    settings.COPRSSH_MAX_KEYS = 3
    first, second, third = make_key("gh-1"), make_key("gh-2"), make_key("gh-3")
    key_server.github("alice", first, second, third)
    add_saved_key(user=user, title="", public_key=first.public)

    resolved = resolve_keys(text=f"{second.public}\nGitHub:alice", user=user, use_saved_keys=True)

    assert {k.fingerprint for k in resolved.keys} == {
        first.fingerprint,
        second.fingerprint,
        third.fingerprint,
    }


@pytest.mark.django_db
def test_resolve_keys_refuses_eleven_pasted_keys_by_default(make_key):
    text = "\n".join(make_key(f"many-{i}").public for i in range(11))

    with pytest.raises(KeyInputError, match="11 different keys given; at most 10"):
        resolve_keys(text=text)


@pytest.mark.django_db
def test_resolve_keys_use_saved_keys_with_none_saved_is_refused(user, make_key):
    with pytest.raises(KeyInputError) as caught:
        resolve_keys(text=make_key("pasted").public, user=user, use_saved_keys=True)

    assert caught.value.field == "use_saved_keys"
    assert caught.value.message == "You have no saved keys; add one on your profile first."


@pytest.mark.django_db
def test_resolve_keys_uses_only_the_callers_saved_keys(user, other_user, make_key):
    mine, theirs = make_key("mine"), make_key("theirs")
    add_saved_key(user=user, title="mine", public_key=mine.public)
    add_saved_key(user=other_user, title="theirs", public_key=theirs.public)

    resolved = resolve_keys(text="", user=user, use_saved_keys=True)

    assert [k.fingerprint for k in resolved.keys] == [mine.fingerprint]
    assert resolved.keys[0].comment == "mine"
