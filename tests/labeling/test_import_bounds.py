"""Import under hostile and careless input: bounded reading, on SQLite and PostgreSQL.

Every refusal is also checked to leave what was already saved as it was. Peak memory is
measured in a fresh subprocess (its own VmHWM), for the CLI and for the function the
UI's Import page calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from labeling import importer
from labeling.accounts import users
from labeling.errors import InvalidInput
from labeling.import_formats import ColumnMap, Limits
from labeling.models import Prompt
from labeling.projects import create_project
from tests.import_rows import counts, pairs, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Import-tests-unusual-42"
PEAK_MB = 500


@pytest.fixture
def saved(Session, tmp_path):  # noqa: N803
    """A pairwise project 'p' (and an sft project 's') holding rows already, and an admin."""
    with Session.begin() as s:
        admin = users.add_user(s, name="admin", role="admin", password=PASSWORD).id
        pid = create_project(s, name="p", kind="pairwise").id
        create_project(s, name="s", kind="sft")
        importer.import_rows(s, project="p", rows=pairs(5))
        importer.import_rows(s, project="s", rows=[{"prompt": "Hi?", "completion": "Hello."}])
    before = counts(Session)
    assert before["tasks"] == 6
    return {"admin": admin, "project": pid, "before": before}


def peak(mode: str, *args: str) -> dict:
    """Runs one import in a fresh interpreter; returns its result, seconds and peak RSS."""
    script = r"""
import json, os, sys, time
mode, *args = sys.argv[1:]
started = time.perf_counter()
if mode == "cli":
    from app.cli.main import main
    out = {"code": main(args)}
else:
    from app.ui.pages.admin_import import import_upload
    user_id, project_id, path = args
    with open(path, "rb") as f:
        data = f.read()
    o = import_upload(user_id=int(user_id), project_id=int(project_id),
                      filename=os.path.basename(path), data=data, max_bytes=50 * 2**20)
    out = {"ok": o.ok, "message": o.message}
out["seconds"] = time.perf_counter() - started
# VmHWM is this process's own peak: ru_maxrss would carry over the parent's across exec.
with open("/proc/self/status") as f:
    hwm = next(line for line in f if line.startswith("VmHWM:"))
out["peak_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""
    env = {**os.environ, "RLHF_USER": "admin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, mode, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def parquet_bomb(path: Path, rows: int, groups: int = 1, *, dictionary: bool = True) -> Path:
    """A tiny file whose one 100,000-character prompt repeats in every row."""
    table = pa.table(
        {
            "prompt": pa.array(["x" * 100_000] * rows),
            "chosen": pa.array(["yes"] * rows),
            "rejected": pa.array(["no"] * rows),
        }
    )
    with pq.ParquetWriter(path, table.schema, compression="zstd", use_dictionary=dictionary) as w:
        for _ in range(groups):
            w.write_table(table)
    return path


# --------------------------------------------------------------------------- Parquet bombs


def test_parquet_bombs_are_refused_with_flat_memory_cli_and_page(Session, saved, tmp_path):
    small = parquet_bomb(tmp_path / "bomb.parquet", 4000)  # 4,000 x 100k characters
    giga = parquet_bomb(tmp_path / "giga.parquet", 4000, groups=10)  # 4 GB decoded
    plain = parquet_bomb(tmp_path / "plain.parquet", 4000, dictionary=False)
    nested = tmp_path / "nested.parquet"  # the same inside conversations
    conversation = [{"role": "user", "content": "x" * 100_000}]
    pq.write_table(pa.table({"prompt": [conversation] * 4000, "completion": ["y"] * 4000}),
                   nested, compression="zstd")  # fmt: skip
    assert all(p.stat().st_size < 42_000 for p in (small, giga, plain, nested))
    for path, verb in (
        (small, "expands to"),
        (giga, "expands to"),
        (plain, "declares"),
        (nested, "expands to"),
    ):
        cli = peak("cli", "import", str(path), "--project", "p")
        assert cli["code"] == 1, cli
        assert f"{path.name} {verb} more than 256 MB" in cli["stderr"]
        assert "--max-total-mb" in cli["stderr"] and "Traceback" not in cli["stderr"]
        assert cli["peak_mb"] < PEAK_MB and cli["seconds"] < 30, cli
        page = peak("page", str(saved["admin"]), str(saved["project"]), str(path))
        assert page["ok"] is False and "more than 256 MB" in page["message"], page
        assert page["peak_mb"] < PEAK_MB, page
    assert counts(Session) == saved["before"]


def test_a_raised_cap_lets_a_real_file_through_and_cells_are_capped(Session, saved, tmp_path):
    path = parquet_bomb(tmp_path / "ten.parquet", 10)
    with pytest.raises(importer.ImportFailed) as failed, Session.begin() as s:
        importer.import_file(s, project="p", path=path, limits=Limits(max_cell_chars=50_000))
    assert "over the cap of 50,000 (--max-cell-chars)" in str(failed.value)
    assert counts(Session) == saved["before"]
    # One distinct prompt (the same 100k characters ten times): one task, nine duplicates.
    with Session.begin() as s:
        result = importer.import_file(s, project="p", path=path)
    assert (result.imported, result.duplicates) == (1, 9)


def test_row_cap_is_checked_from_parquet_metadata_before_decoding(Session, saved, tmp_path):
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(50)]}), path)
    with pytest.raises(InvalidInput, match=r"more than 20 rows, the cap .*--max-rows"):
        with Session.begin() as s:
            importer.import_file(s, project="p", path=path, limits=Limits(max_rows=20))
    assert counts(Session) == saved["before"]


# --------------------------------------------------------------------------- endless input


def test_dev_zero_a_fifo_and_a_line_without_end(Session, saved, tmp_path, cli):
    started = time.perf_counter()
    out = cli("import", "/dev/zero", "--project", "p", user="admin")
    assert out.code == 1 and "/dev/zero is not a regular file" in out.err
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    out = cli("import", str(fifo), "--project", "p", user="admin")
    assert out.code == 1 and "is not a regular file" in out.err
    assert time.perf_counter() - started < 5

    # 100 MB with no newline, as JSON lines, CSV and a JSON array: quick, bounded, clear.
    blob = tmp_path / "blob"
    with blob.open("wb") as f:
        for _ in range(100):
            f.write(b"x" * 2**20)
    for suffix, head, expected in (
        (".jsonl", b'{"prompt": "', "line 1: the row is larger than 8 MB, the cap (--max-row-mb)"),
        (".csv", b'prompt\n"', "line 2: the CSV record is larger than 8 MB"),
        (".json", b'[{"prompt": "', "element 1 of the JSON array is larger than 8 MB"),
    ):
        path = tmp_path / f"endless{suffix}"
        with path.open("wb") as f, blob.open("rb") as src:
            f.write(head)
            while chunk := src.read(2**22):
                f.write(chunk)
        result = peak("cli", "import", str(path), "--project", "p")
        assert result["code"] == 1, result
        assert expected in result["stderr"], result["stderr"]
        assert result["peak_mb"] < PEAK_MB and result["seconds"] < 30, result
        path.unlink()
    assert counts(Session) == saved["before"]


def test_caps_name_their_flags_and_bad_flags_are_one_sentence(Session, saved, tmp_path, cli):
    path = write_jsonl(tmp_path / "p.jsonl", pairs(3, start=100))
    out = cli("import", str(path), "--project", "p", "--max-rows", "2", user="admin")
    assert out.code == 1 and "more than 2 rows" in out.err and "--max-rows" in out.err
    out = cli("import", str(path), "--project", "p", "--max-cell-chars", "5", user="admin")
    assert out.code == 1 and "(--max-cell-chars)" in out.err
    big = write_jsonl(tmp_path / "big.jsonl", pairs(30_000, start=1000))
    assert big.stat().st_size > 2**20
    out = cli("import", str(big), "--project", "p", "--max-total-mb", "1", user="admin")
    assert out.code == 1 and "big.jsonl holds more than 1 MB" in out.err
    for flag, value in (
        ("--max-rows", "0"),
        ("--max-row-mb", "-3"),
        ("--max-total-mb", str(10**30)),
        ("--max-cell-chars", "10000000000000"),
    ):
        out = cli("import", str(path), "--project", "p", flag, value, user="admin")
        assert out.code == 1 and out.err.startswith(f"error: {flag} must be a whole number")
        assert out.err.count("\n") == 1
    assert counts(Session) == saved["before"]
    out = cli("import", str(path), "--project", "p", "--max-rows", "3", user="admin")
    assert out.code == 0 and counts(Session)["tasks"] == saved["before"]["tasks"] + 3


def test_saved_dataset_caps(Session, saved, tmp_path):
    import datasets

    datasets.Dataset.from_list(pairs(30, start=50)).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(InvalidInput, match="more than 10 rows"), Session.begin() as s:
        importer.import_file(s, project="p", path=tmp_path / "d", limits=Limits(max_rows=10))
    assert counts(Session) == saved["before"]


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    "body, expected",
    [
        ('q,a,b\n"never closed,a,b\n', "line 3: malformed CSV: a quoted cell that starts here"),
        ('q,a,b\n"closed"then text,a,b\n', "line 3: malformed CSV: text follows a closing quote"),
    ],
)
def test_csv_malformations_refuse_the_whole_file(Session, saved, tmp_path, cli, body, expected):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,chosen,rejected\n" + body, encoding="utf-8")
    for extra in ((), ("--skip-invalid",)):  # the rest of the file is unreadable: no partial
        out = cli("import", str(path), "--project", "p", *extra, user="admin")
        assert out.code == 1 and expected in out.err, out.err
    assert counts(Session) == saved["before"]


def test_csv_short_rows_and_repeated_columns(Session, saved, tmp_path, cli):
    short = tmp_path / "short.csv"
    short.write_text("prompt,chosen,rejected\nq1,a,b\nq2,a\nnul \x00,a,b\n", encoding="utf-8")
    out = cli("import", str(short), "--project", "p", "--json", user="admin")
    assert out.code == 1
    assert [(e["line"], e["error"]) for e in out.json()["errors"]] == [
        (3, "2 cells but the header names 3 columns"),
        (4, "prompt message 1 contains a NUL character"),
    ]
    twice = tmp_path / "twice.csv"
    twice.write_text("prompt,chosen,chosen,rejected\nq,a,b,c\n", encoding="utf-8")
    out = cli("import", str(twice), "--project", "p", user="admin")
    assert out.code == 1 and "names column 'chosen' twice" in out.err
    assert counts(Session) == saved["before"]


def test_value_maps_and_column_maps_parse_strictly():
    mapping = ColumnMap.parse("prompt=instruction, a=output_1", ["choice:1=a,2.0=b", "x:y=z"])
    assert mapping.apply({"instruction": "I", "output_1": "O", "choice": 2}) == {
        "prompt": "I",
        "a": "O",
        "choice": "b",
    }
    for columns, values, message in (
        ("prompt", None, "write FIELD=COLUMN"),
        ("question=q", None, "'question' is not a field"),
        ("prompt=a,prompt=b", None, "names the field 'prompt' twice"),
        (None, "choice", "write FIELD:FROM=TO"),
        (None, "choice:1=left", "'left' is not a choice"),
    ):
        with pytest.raises(InvalidInput, match=message):
            ColumnMap.parse(columns, values)


# --------------------------------------------------------------------------- JSON arrays


def test_json_arrays_stream_across_chunk_boundaries(Session, saved, tmp_path, monkeypatch):
    from labeling import import_readers

    monkeypatch.setattr(import_readers, "READ_CHUNK", 7)  # every element spans many reads
    rows = pairs(40, start=300)
    rows[3]["prompt"] = 'Unicode é 漢字 🎉, "quotes", [brackets] and {braces}'
    path = tmp_path / "arr.json"
    path.write_text("\ufeff [\n" + ",\n ".join(json.dumps(r) for r in rows) + "\n]\n", "utf-8")
    with Session.begin() as s:
        result = importer.import_file(s, project="p", path=path)
    assert (result.rows_read, result.imported) == (40, 40)
    with Session() as s:
        assert s.scalar(select(Prompt).where(Prompt.source == "arr.json").limit(1)) is not None
        contents = {p.messages[0]["content"] for p in s.scalars(select(Prompt))}
    assert rows[3]["prompt"] in contents
    after = counts(Session)
    for text, message in (
        ('[{"prompt": "a", "chosen": "b", "rejected": "c"},', "the array is never closed"),
        ('[{"prompt": "a"} {"prompt": "b"}]', "expected ',' or ']' after element 1"),
        ('[{"prompt": "a", "chosen": tru}]', "malformed JSON file"),
        ('[{"prompt": "a", "chosen": tru},' + " " * 300 + "]", "Expecting value in element 1"),
        ('{"not": "an array"', "cannot tell the type|malformed JSON"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInput, match=message), Session.begin() as s:
            importer.import_file(s, project="p", path=bad)
    bad.write_text("[1, [2], null]", encoding="utf-8")
    with pytest.raises(importer.ImportFailed) as failed, Session.begin() as s:
        importer.import_file(s, project="p", path=bad)
    assert [str(e) for e in failed.value.result.errors] == [
        "row 1: expected a JSON object, got a number",
        "row 2: expected a JSON object, got a list",
        "row 3: expected a JSON object, got null",
    ]
    assert counts(Session) == after


def test_json_array_reader_agrees_with_json_loads_at_every_chunk_size(tmp_path, monkeypatch):
    from labeling import import_readers

    rows = [
        {"prompt": 'a"b\\', "n": -12.5e3, "t": True, "f": False, "z": None, "l": [1, "x"]},
        {"prompt": "é 🎉 \u2028", "nested": {"deep": [[], {}]}},
    ] * 3
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    for size in range(1, 41):
        monkeypatch.setattr(import_readers, "READ_CHUNK", size)
        got = [row for _, row in import_readers._read_json_array(path, Limits())]
        assert got == json.loads(path.read_text(encoding="utf-8")), size
