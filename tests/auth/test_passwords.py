"""argon2id hashing and verification, and ConfigUsers."""

from __future__ import annotations

import threading

import argon2
import pytest

from kaiju.auth.passwords import Passwords, hash_password, is_password_hash
from kaiju.auth.users import ConfigUsers
from kaiju.rpc import Scope

cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_hash_password_makes_argon2id():
    made = hash_password("pw")
    assert made.startswith("$argon2id$") and is_password_hash(made)
    assert not is_password_hash("pw") and not is_password_hash(None) and not is_password_hash("$argon2id$broken")


class RecordingHasher(argon2.PasswordHasher):
    """argon2's hasher, noting which hash each verification used and in which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def verify(self, hash, password):  # noqa: A002 -- argon2's own parameter name
        self.calls.append((hash, threading.get_ident()))
        return super().verify(hash, password)


async def test_verify_runs_off_the_loop_thread_and_rehashes_old_parameters():
    hasher = RecordingHasher()
    passwords = Passwords(hasher)
    current = passwords.hash("pw")
    assert await passwords.verify(current, "pw") == (True, None)
    ok, new_hash = await passwords.verify(cheap.hash("pw"), "pw")
    assert ok and new_hash is not None and "m=65536" in new_hash
    assert await passwords.verify(current, "wrong") == (False, None)
    assert len(hasher.calls) == 3 and threading.get_ident() not in {thread for _, thread in hasher.calls}


async def test_an_unknown_user_is_checked_against_the_dummy_hash():
    hasher = RecordingHasher()
    passwords = Passwords(hasher)
    assert await passwords.verify(None, "anything") == (False, None)
    assert [stored for stored, _ in hasher.calls] == [passwords._dummy] and is_password_hash(passwords._dummy)


async def test_config_users_by_name():
    users = ConfigUsers(users={
        "alice": {"password_hash": cheap.hash("x"), "permissions": ["orders.*"]},
        "carol": {"password_hash": cheap.hash("y"), "id": 3, "scope": "admin", "disabled": True},
    })
    alice, carol = await users.get_user("alice"), await users.get_user("carol")
    assert alice.id == "alice" and alice.scope is Scope.USER and alice.permissions == frozenset({"orders.*"})
    assert carol.id == 3 and carol.scope is Scope.ADMIN and carol.disabled
    assert await users.get_user("nobody") is None


@pytest.mark.parametrize("value", ["hunter2", "", "$argon2id$x"])
def test_a_plain_password_in_config_users_is_refused_without_being_quoted(value):
    with pytest.raises(ValueError, match=r"users\.alice\.password_hash: expected an argon2id hash") as info:
        ConfigUsers(users={"alice": {"password_hash": value}})
    assert value not in str(info.value) or not value


def test_an_unknown_scope_names_its_user():
    with pytest.raises(ValueError, match=r"users\.alice\.scope: unknown scope 'boss'"):
        ConfigUsers(users={"alice": {"password_hash": cheap.hash("x"), "scope": "boss"}})
