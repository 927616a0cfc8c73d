"""The password policy, where passwords are chosen (add_user, set_password); stored hashes
from before it keep working. Both databases."""

import pytest
from argon2 import PasswordHasher

from labeling.accounts import passwords, users
from labeling.errors import InvalidInput, NotFound, PermissionDenied
from labeling.models import User

REFUSED = {
    "12345678": "most common",
    "123456789012": "most common",
    "password1234": "most common",
    "Password123!": "most common",  # case and decoration do not help
    "sunshine2026!": "most common",
    "correcthorsebatterystaple": "most common",
    "short-pw": "too short",
    "abcabcabcabc": "too simple",
    "aaaaaaaaaaaaaaaa": "too simple",
    "ab" * 700: "too long",
}


@pytest.mark.parametrize("password, message", REFUSED.items(), ids=range(len(REFUSED)))
def test_weak_passwords_are_refused_with_one_sentence(password, message):
    with pytest.raises(InvalidInput, match=message):
        passwords.check(password)


def test_the_demo_passwords_and_ordinary_ones_pass():
    from labeling.demo import ACCOUNTS

    for name, _, password in ACCOUNTS:
        passwords.check(password, name=name)
    for password in ("long-password", "lab-password", "password-123", "tea at 5 o'clock"):
        passwords.check(password)
    assert len(passwords.COMMON) > 300


def test_policy_applies_to_new_accounts_and_new_passwords(Session):
    with Session.begin() as s:
        with pytest.raises(InvalidInput, match="most common"):
            users.add_user(s, name="ann", role="labeler", password="12345678")
        with pytest.raises(InvalidInput, match="user name"):
            users.add_user(s, name="annabelle-smith", role="labeler", password="Annabelle-Smith")
        users.add_user(s, name="ann", role="labeler", password="a fine passphrase")
    with Session.begin() as s:
        with pytest.raises(InvalidInput, match="too short"):
            users.set_password(s, "ann", "shorty")
        with pytest.raises(PermissionDenied, match="current password is wrong"):
            users.set_password(s, "ann", "another fine one", current_password="guess-guess!")
        with pytest.raises(NotFound):
            users.set_password(s, "ghost", "another fine one")
    with Session() as s:
        assert users.authenticate(s, "ann", "a fine passphrase") is not None  # nothing changed


def test_hashes_stored_under_an_older_policy_keep_working(Session):
    with Session.begin() as s:
        s.add(User(name="old", role="labeler", password_hash=PasswordHasher().hash("pass1234")))
    with Session() as s:
        assert users.authenticate(s, "old", "pass1234").name == "old"
