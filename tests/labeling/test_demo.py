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
