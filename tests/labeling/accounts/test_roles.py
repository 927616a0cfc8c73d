"""Role refusals name the role with the right article and the roles that may act."""

from __future__ import annotations

import pytest

from labeling.accounts import users
from labeling.errors import PermissionDenied
from labeling.kinds import Role, with_article


def test_with_article():
    assert [with_article(r.value) for r in Role] == ["an admin", "an engineer", "a labeler"]


def test_a_refusal_says_an_engineer(Session):  # noqa: N803
    with Session.begin() as s:
        users.add_user(s, name="eve", role="engineer", password=None)
    with Session.begin() as s, pytest.raises(PermissionDenied) as refused:
        users.require_role(s, "eve", Role.admin)
    assert str(refused.value) == "eve is an engineer; this needs admin"
