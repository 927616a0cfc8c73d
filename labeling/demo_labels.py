"""`rlhf demo --with-labels`: the demo labelers' work, so the loop can run at once.

Both demo labelers work through the labeling queue as a person would (claim, then submit):
on demo-compare each compares every pair (overlap 2) and mostly prefers the better answer,
with the disagreements real labelers have (labeler2 calls two pairs a tie and prefers the
weaker answer once); on demo-write `labeler` writes an answer to every prompt. Prompts keep
the held-out split the demo gave them (labeling/demo.py), so snapshots have held-out rows.
An arena, demo-arena, gets the held-out prompts of both projects (nothing trains on them)
and, where `labeler` wrote one, the labeler's answer as the `human` contestant. Running it again adds nothing.
"""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling import arena, projects, queue
from labeling.errors import NotFound
from labeling.models import Project, User

ARENA = "demo-arena"
ARENA_GUIDELINES = """\
# How to judge (arena)

Two models answered the same prompt; you do not know which is which.
Prefer the answer that is **helpful**, **honest** and **clear**. *Tie* when neither is better,
*both bad* when neither is acceptable.
"""

# demo-write: the answers `labeler` writes, prompt by prompt (labeling/demo.py WRITE_PROMPTS)
DEMONSTRATIONS = {
    "Explain photosynthesis to a ten-year-old.": (
        "Plants make their own food using sunlight. Their leaves take in air (carbon dioxide) "
        "and their roots drink water. With the energy of sunlight, the leaves turn these into "
        "sugar, which the plant uses to grow, and they give out oxygen, which we breathe."
    ),
    "Write a short, polite email declining a meeting invitation.": (
        "Subject: Thursday meeting\n\nHi Sam,\n\nThank you for the invitation. Unfortunately I "
        "can't make it on Thursday because of an earlier commitment. Could you share the notes "
        "afterwards? I'm happy to follow up on anything that needs my input.\n\nBest regards,\nAlex"
    ),
    "Give three ideas for a rainy-day activity with children.": (
        "1. Build a blanket fort and read stories inside it with a torch.\n2. Bake simple "
        "cookies together and let them decorate them.\n3. Hold an indoor treasure hunt with "
        "picture clues hidden around the house."
    ),
    "What are the benefits of taking short breaks while studying?": (
        "Short breaks keep your attention fresh, so you remember more of what you read. They "
        "also reduce eye strain and stiffness, lower stress, and give your brain time to "
        "connect new ideas. Five minutes every half hour or so works well for many people."
    ),
    "Describe how to make a simple vegetable soup.": (
        "Chop an onion, two carrots, a potato and a celery stick. Soften the onion in a little "
        "oil, add the other vegetables and cover them with stock. Simmer for about 20 minutes "
        "until everything is tender, season with salt and pepper, and blend if you like it smooth."
    ),
    "Write a limerick about a cat who loves the sun.": (
        "A cat with a coat like warm honey\nwould nap where the window was sunny;\nshe'd stretch "
        "out her paws\nwithout any pause,\nand purr as if sunshine were money."
    ),
    "How does a rainbow form?": (
        "When sunlight passes into raindrops it bends, reflects off the back of the drop and "
        "bends again on the way out. Each colour bends by a slightly different amount, so the "
        "white light spreads into red, orange, yellow, green, blue and violet. You see a "
        "rainbow when the sun is behind you and rain is in front of you."
    ),
    "Suggest a name and a one-line description for a plant-watering app.": (
        "Sprout Reminder: it learns how thirsty each of your plants is and nudges you on the "
        "day they need water."
    ),
}

# labeler2's judgments where they differ from "the better answer, clearly": pair index ->
# (choice relative to the better answer, strength)
LABELER2_DIFFERS = {2: ("tie", None), 6: ("tie", None), 9: ("weaker", 1)}


def seed_labels(session: Session) -> dict[str, int]:
    """Labels from the demo labelers and the demo arena; returns what was added."""
    from labeling.demo import PAIRS

    compare = _project(session, "demo-compare")
    write = _project(session, "demo-write")
    better_text = {question: better for question, better, _ in PAIRS}
    index = {question: i for i, (question, _, _) in enumerate(PAIRS)}
    rng = random.Random(0)
    added = {"preferences": 0, "demonstrations": 0}
    for name in ("labeler", "labeler2"):
        user_id = _user(session, name)
        while (task := _claim(session, compare, user_id)) is not None:
            question = task.prompt.messages[-1]["content"]
            better_is_a = task.response_a.text == better_text[question]
            choice, strength = "better", 2 if rng.random() < 0.6 else 3
            if name == "labeler2" and index[question] in LABELER2_DIFFERS:
                choice, strength = LABELER2_DIFFERS[index[question]]
            if choice != "tie":
                choice = "a" if better_is_a == (choice == "better") else "b"
            queue.submit_preference(
                session, task_id=task.id, user_id=user_id, choice=choice, strength=strength,
                time_spent_ms=rng.randint(6_000, 40_000),
            )  # fmt: skip
            added["preferences"] += 1
    user_id = _user(session, "labeler")
    while (task := _claim(session, write, user_id)) is not None:
        text = DEMONSTRATIONS[task.prompt.messages[-1]["content"]]
        queue.submit_demonstration(
            session, task_id=task.id, user_id=user_id, text=text,
            time_spent_ms=rng.randint(40_000, 180_000),
        )  # fmt: skip
        added["demonstrations"] += 1
    added.update(_arena(session, compare, write))
    return added


def _arena(session: Session, *sources: Project) -> dict[str, int]:
    try:
        demo_arena = projects.get_project(session, ARENA)
        created = 0
    except NotFound:
        demo_arena = projects.create_project(
            session, name=ARENA, kind="arena", overlap=1, guidelines=ARENA_GUIDELINES
        )
        created = 1
    copied = sum(arena.copy_prompts(session, demo_arena, p)["copied"] for p in sources)
    humans = arena.add_human_answers(session, demo_arena)
    return {"arena_created": created, "arena_prompts": copied, "arena_human_answers": humans}


def _claim(session: Session, project: Project, user_id: int):
    assignment = queue.claim_next(session, project_id=project.id, user_id=user_id)
    return assignment.task if assignment is not None else None


def _project(session: Session, name: str) -> Project:
    return projects.get_project(session, name)


def _user(session: Session, name: str) -> int:
    user_id = session.scalar(select(User.id).where(User.name == name))
    if user_id is None:
        raise NotFound(f"the demo account {name!r} is missing: run `rlhf demo` first")
    return user_id
