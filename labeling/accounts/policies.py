"""Who may do what: one table from an action to the roles allowed to do it.

Every page (app.ui.auth.require_action), every button (app.ui.actions.act), the sidebar
(app.ui.navigation) and every CLI command (app.cli.common.acting_user) names its action
here, so a change of who may do something is one line in one place, and the server-side
check is the same in the browser and on the command line.

    roles = policies.allowed("snapshot.create")   # (Role.admin, Role.engineer)
"""

from __future__ import annotations

from labeling.kinds import Role

ADMIN = (Role.admin,)
STAFF = (Role.admin, Role.engineer)
EVERYONE = (Role.admin, Role.engineer, Role.labeler)

POLICIES: dict[str, tuple[Role, ...]] = {
    # accounts and the server
    "users.manage": ADMIN,  # add, list, set role, (de)activate, reset another's password
    "users.own_password": EVERYONE,  # change one's own password (the current one is asked)
    "serve": ADMIN,
    "db.manage": ADMIN,  # upgrade, downgrade, backup, restore
    "demo": ADMIN,
    # projects and labels
    "projects.manage": ADMIN,  # create, edit settings and guidelines
    "projects.list": EVERYONE,
    "tasks.status": STAFF,
    "label": EVERYONE,  # claim, submit, skip: every role may label
    "dashboard": ADMIN,
    "import": STAFF,
    "snapshot.create": STAFF,
    "snapshot.read": STAFF,
    "quality": STAFF,  # label-quality metrics: rlhf quality, the Quality page (read-only)
    "review": STAFF,  # accept / reject / relabel labels, pause labelers (no separate role)
    "queue.prioritise": STAFF,  # active learning: re-order a project's open compare tasks
    # training and models
    "train": STAFF,
    "worker": STAFF,
    "checkpoints": STAFF,
    "eval": STAFF,
    "generate": STAFF,
    "probe": STAFF,  # hallucination probes: rlhf probe, the Probes page
    "runs.read": STAFF,
    # arena and results
    "arena.manage": STAFF,
    "leaderboard": EVERYONE,
}


def allowed(action: str) -> tuple[Role, ...]:
    """The roles that may do `action`; an unknown action is a programming error."""
    try:
        return POLICIES[action]
    except KeyError:
        raise KeyError(
            f"no policy for action {action!r}: add it to labeling.accounts.policies"
        ) from None
