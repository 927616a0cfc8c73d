from sqlalchemy import func, select

from labeling import projects, queue
from labeling.accounts import users
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Task, User


def test_demo_seeds_once_and_labelers_can_work(cli, db_url):
    first = cli("demo", "--json")
    assert first.code == 0, first.err
    assert first.json()["users_created"] == 4 and first.json()["projects_created"] == 2
    # once accounts exist, running it again needs an admin, and changes nothing
    assert cli("demo").code == 1
    again = cli("demo", "--json", user="admin")
    assert again.json()["users_created"] == 0 and again.json()["projects_created"] == 0

    Session = make_sessionmaker(make_engine(db_url))
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 4
        assert s.scalar(select(func.count()).select_from(Task)) == 12 + 8
        labeler = users.authenticate(s, "labeler", "demo-labeler")
        assert labeler is not None
        project = projects.get_project(s, "demo-compare")
        assignment = queue.claim_next(s, project_id=project.id, user_id=labeler.id)
        assert assignment.task.response_a.text and assignment.task.response_b.text


def test_demo_with_labels_closes_the_loop_without_hand_labeling(cli, db_url):
    """Labels from both demo labelers through the queue, a real held-out split, an arena."""
    seeded = cli("demo", "--with-labels", "--json")
    assert seeded.code == 0, seeded.err
    out = seeded.json()
    assert (out["preferences"], out["demonstrations"]) == (24, 8)  # 12 pairs x 2, 8 prompts
    assert out["arena_created"] == 1 and out["arena_prompts"] == 5  # 3 + 2 held out
    assert out["arena_human_answers"] == 2  # the held-out write prompts, answered by labeler
    again = cli("demo", "--with-labels", "--json", user="admin").json()
    assert (again["preferences"], again["demonstrations"], again["arena_prompts"]) == (0, 0, 0)

    cli("users", "add", "eng", "--role", "engineer", "--password-stdin", user="admin",
        stdin="engineer-password\n")  # fmt: skip
    pref = cli("snapshot", "create", "--project", "demo-compare", "--kind", "preference",
               "--json", user="eng")  # fmt: skip
    assert pref.code == 0, pref.err
    # 24 labels on 12 pairs; labeler2's two ties leave no preference row
    assert pref.json()["splits"] == {"train": 16, "heldout": 6}
    sft = cli("snapshot", "create", "--project", "demo-write", "--kind", "sft", "--json",
              user="eng")  # fmt: skip
    assert sft.json()["splits"] == {"train": 6, "heldout": 2}

    Session = make_sessionmaker(make_engine(db_url))
    with Session.begin() as s:
        demo_arena = projects.get_project(s, "demo-arena")
        assert demo_arena.kind.value == "arena"
        # the demo-write project has writing guidelines, not the comparison ones
        assert "How to write an answer" in projects.get_project(s, "demo-write").guidelines
        # the labelers' work is done: nothing left in their queues
        labeler = users.authenticate(s, "labeler2", "demo-labeler2")
        compare = projects.get_project(s, "demo-compare")
        assert queue.claim_next(s, project_id=compare.id, user_id=labeler.id) is None
