"""A small, benign demo: accounts, a comparison project and a writing project.

The passwords are printed in the README: this is for trying the platform on one machine,
never for a shared server. Every fourth prompt is held out (not by hash: with a dozen
prompts a hash split may hold out none), so snapshots, `eval reward --split heldout` and
`arena add-prompts` have rows to work on. `rlhf demo --with-labels` adds the demo labelers'
labels and an arena (labeling/demo_labels.py).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling import projects
from labeling.accounts import users
from labeling.models import Project, Split, User
from labeling.tasks import add_compare_task, add_prompt, add_response, add_write_task

ACCOUNTS = [
    ("admin", "admin", "demo-admin-pw"),
    ("engineer", "engineer", "demo-engineer"),
    ("labeler", "labeler", "demo-labeler"),
    ("labeler2", "labeler", "demo-labeler2"),
]

GUIDELINES = """\
# How to judge

1. **Helpful first**: does the answer do what was asked?
2. **Honest**: no made-up facts; saying "I am not sure" is fine.
3. **Clear**: short and well organised beats long and rambling.

Pick *tie* when neither is better, *both bad* when neither is acceptable.
"""

WRITE_GUIDELINES = """\
# How to write an answer

1. **Answer what was asked**, completely, in the form asked for (an email, a list, a poem).
2. **Be right**: no made-up facts; say "I am not sure" rather than guess.
3. **Be clear and kind**: plain words, short paragraphs, no padding; write as for a curious
   friend.

A good answer here is a model's target: write the answer you would want a model to give.
"""

# (prompt, a better answer, a weaker answer)
PAIRS = [
    (
        "How do I boil an egg so the yolk stays soft?",
        "Lower the egg into boiling water, cook it for 6 to 7 minutes, then cool it in cold "
        "water for a minute before peeling. The white sets and the yolk stays runny.",
        "Boil it for a while until it is done.",
    ),
    (
        "What is the difference between weather and climate?",
        "Weather is what the atmosphere does over hours or days: rain today, sun tomorrow. "
        "Climate is the pattern of weather over decades in a region, such as how warm and wet "
        "its summers usually are.",
        "They are the same thing; people use both words for rain and sun.",
    ),
    (
        "Write a haiku about autumn leaves.",
        "Red leaves let go now,\nspinning slowly to the ground,\nthe tree breathes out light.",
        "Leaves are falling down from trees in autumn because it is autumn.",
    ),
    (
        "Explain what a binary search does, in two sentences.",
        "Binary search finds an item in a sorted list by checking the middle element and "
        "discarding the half that cannot contain it. Repeating this halves the work each step, "
        "so it needs about log2(n) comparisons.",
        "Binary search looks at every element one by one until it finds the right one.",
    ),
    (
        "Suggest three names for a friendly cafe that sells books.",
        "1. Chapter & Cup\n2. The Reading Bean\n3. Pages and Pastries",
        "Cafe. Book Cafe. The Cafe.",
    ),
    (
        "How many minutes are there in a day?",
        "There are 1,440 minutes in a day (24 hours x 60 minutes).",
        "There are about 1,000 minutes in a day.",
    ),
    (
        "Give me one tip for remembering people's names.",
        'Repeat the name back as soon as you hear it ("Nice to meet you, Priya") and use it '
        "once more during the conversation; saying it aloud helps it stick.",
        "Just try harder to remember.",
    ),
    (
        "Translate 'good morning' into Spanish and French.",
        'Spanish: "buenos días". French: "bonjour".',
        'Spanish: "bonjour". French: "buenos días".',
    ),
    (
        "Why is the sky blue?",
        "Sunlight is scattered by the molecules in the air, and shorter (blue) wavelengths "
        "scatter much more than longer (red) ones, so blue light reaches your eyes from every "
        "direction of the sky.",
        "Because it reflects the colour of the ocean.",
    ),
    (
        "Write a Python function that returns the largest number in a list.",
        '```python\ndef largest(numbers):\n    if not numbers:\n        raise ValueError("empty list")\n'
        "    return max(numbers)\n```",
        "```python\ndef largest(numbers):\n    return numbers[0]\n```",
    ),
    (
        "What should I pack for a one-day hike?",
        "Water (at least two litres), snacks, a map or offline map app, sun protection, a light "
        "rain layer, a small first-aid kit and a charged phone.",
        "Nothing, hikes are short.",
    ),
    (
        "Summarise the plot of Cinderella in one sentence.",
        "A kind young woman mistreated by her stepfamily attends a royal ball with the help of "
        "her fairy godmother, loses a glass slipper at midnight, and is found by the prince who "
        "searches for the foot it fits.",
        "It is a story about a pumpkin.",
    ),
]

WRITE_PROMPTS = [
    "Explain photosynthesis to a ten-year-old.",
    "Write a short, polite email declining a meeting invitation.",
    "Give three ideas for a rainy-day activity with children.",
    "What are the benefits of taking short breaks while studying?",
    "Describe how to make a simple vegetable soup.",
    "Write a limerick about a cat who loves the sun.",
    "How does a rainbow form?",
    "Suggest a name and a one-line description for a plant-watering app.",
]


def seed(session: Session) -> dict[str, int | bool]:
    """Create the demo accounts and projects; running it again changes nothing."""
    created_users = 0
    for name, role, password in ACCOUNTS:
        if session.scalar(select(User.id).where(User.name == name)) is None:
            users.add_user(session, name=name, role=role, password=password)
            created_users += 1
    created_projects = 0
    if session.scalar(select(Project.id).where(Project.name == "demo-compare")) is None:
        p = projects.create_project(
            session, name="demo-compare", kind="pairwise", overlap=2, guidelines=GUIDELINES
        )
        for i, (question, better, weaker) in enumerate(PAIRS):
            prompt = add_prompt(session, p, question, source="demo")
            prompt.split = _split(i)
            good, bad = add_response(session, prompt, better), add_response(session, prompt, weaker)
            # alternate which slot holds the better answer, so "always A" is not a strategy
            a, b = (good, bad) if i % 2 == 0 else (bad, good)
            add_compare_task(session, p, prompt, a, b)
        created_projects += 1
    if session.scalar(select(Project.id).where(Project.name == "demo-write")) is None:
        p = projects.create_project(
            session, name="demo-write", kind="sft", overlap=1, guidelines=WRITE_GUIDELINES
        )
        for i, question in enumerate(WRITE_PROMPTS):
            prompt = add_prompt(session, p, question, source="demo")
            prompt.split = _split(i)
            add_write_task(session, p, prompt)
        created_projects += 1
    return {"users_created": created_users, "projects_created": created_projects}


def _split(i: int) -> Split:
    return Split.heldout if i % 4 == 3 else Split.train
