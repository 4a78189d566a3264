"""Table outputs: -o FILE.parquet / FILE.csv from a JSONL journal, and ``export``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import jpeg

from describer import ConfigError
from describer.emulator import GeminiEmulator, ImageServer
from describer.export import export
from describer.model import ErrorType, ItemError, Result


def record(source: str, **fields: Any) -> str:
    return Result(source, "gemini-3.8-flash", "p", **fields).to_line()


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def test_a_killed_runs_journal_is_resumed_and_the_table_made(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for i in range(3):
        images.add(f"/p{i}.jpg", jpeg(24, 16, seed=i))
    urls = [images.url(f"/p{i}.jpg") for i in range(3)]
    table = tmp_path / "in.csv"
    table.write_text("id,url\n" + "".join(f"{i},{u}\n" for i, u in enumerate(urls)))
    out = tmp_path / "out.parquet"
    journal = tmp_path / "out.parquet.journal.jsonl"
    # what a run killed mid-write leaves: one whole record, one torn, and no table yet
    whole = record(urls[0], description="first", id="0")
    journal.write_text(whole + record(urls[1], description="second", id="1")[:40])
    outcome = await describe_run(capsys, [str(table)], output=out, id_col="id")
    assert outcome.code == 0, outcome.stderr
    assert "dropped a torn last line" in outcome.stderr
    assert [images.hits[f"/p{i}.jpg"] for i in range(3)] == [0, 1, 1]
    rows = {row["id"]: row for row in pq.read_table(out).to_pylist()}
    assert sorted(rows) == ["0", "1", "2"] and rows["0"]["description"] == "first"
    assert journal.read_text().startswith(whole)


async def test_csv_output_and_an_earlier_failure_superseded(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    images.add("/a.jpg", jpeg(24, 16))
    url = images.url("/a.jpg")
    out = tmp_path / "out.csv"
    failed = record(url, error=ItemError(ErrorType.HTTP_ERROR, "HTTP 503"))
    (tmp_path / "out.csv.journal.jsonl").write_text(failed)
    outcome = await describe_run(capsys, [url], output=out, schema="title")
    assert outcome.code == 0, outcome.stderr
    (row,) = csv_rows(out)  # the failure is replaced by the later description
    assert row["source"] == url and row["error_type"] == "" and row["description"]
    assert json.loads(row["data"])["title"] and row["mime_type"] == "image/jpeg"
    assert int(row["input_tokens"]) > 0 and row["cached"] == "false"


def test_export_to_parquet_csv_and_hugging_face_imagefolder(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    lines = [
        record(str(photos / "a.jpg"), description="a cat", id="1", meta={"n": 1, "w": 2.5}),
        record(str(photos / "sub" / "b.jpg"), description="a dog", id="2",
               meta={"n": "two", "w": 3}),
        record(str(photos / "c.jpg"), id="3", error=ItemError(ErrorType.CORRUPT_IMAGE, "bad")),
        record("https://example.com/d.jpg", description="a url", id="4"),
    ]  # fmt: skip
    records = tmp_path / "out.jsonl"
    records.write_text("".join(lines))
    env = {"GEMINI_API_KEY": TEST_KEY}
    done = cli(["export", str(records), "--to", "parquet"], env)
    assert done.returncode == 0 and "wrote 4 rows to" in done.stderr
    got = pq.read_table(tmp_path / "out.parquet")
    assert got.schema.field("meta").type == pa.struct([("n", pa.string()), ("w", pa.float64())])
    assert got.column("meta").to_pylist()[:2] == [{"n": "1", "w": 2.5}, {"n": "two", "w": 3.0}]
    assert got.column("error").to_pylist()[2] == {"type": "corrupt_image", "message": "bad"}
    done = cli(["export", str(records), "--to", "csv", "-o", str(tmp_path / "t.csv")], env)
    assert done.returncode == 0
    rows = csv_rows(tmp_path / "t.csv")
    assert [(r["id"], r["meta.n"], r["meta.w"]) for r in rows][:2] == [("1", "1", "2.5"),
                                                                        ("2", "two", "3")]
    done = cli(["export", str(records), "--to", "hf"], env)
    assert done.returncode == 0 and "2 left out" in done.stderr
    metadata = [json.loads(x) for x in (photos / "metadata.jsonl").read_text().splitlines()]
    assert [(m["file_name"], m["description"], m["id"]) for m in metadata] == [
        ("a.jpg", "a cat", "1"), ("sub/b.jpg", "a dog", "2")]
    assert list(metadata[0])[:3] == ["file_name", "description", "model"]
    # a second export replaces describer's own file
    assert cli(["export", str(records), "--to", "hf"], env).returncode == 0


@pytest.mark.parametrize(
    ("name", "to", "body"),
    [
        ("metadata.jsonl", "hf", b'{"file_name": "a.jpg", "label": "cat"}\n'),
        ("t.csv", "csv", b"source,label\na.jpg,cat\n"),
        ("t.parquet", "parquet", b"PAR1 not really"),
        ("t.parquet", "parquet", None),  # a real Parquet file, not describer's
    ],
)
def test_export_never_replaces_a_file_describer_did_not_write(
    tmp_path: Path, name: str, to: str, body: bytes | None
) -> None:
    records = tmp_path / "out.jsonl"
    records.write_text(record(str(tmp_path / "a.jpg"), description="x"))
    target = tmp_path / name
    if body is None:
        pq.write_table(pa.table({"source": ["a.jpg"]}), target)
    else:
        target.write_bytes(body)
    before = target.read_bytes()
    with pytest.raises(ConfigError, match=r"is not a .* file describer wrote"):
        export(records, target, to)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


async def test_a_run_refuses_a_table_output_describer_did_not_write(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    images.add("/a.jpg", jpeg(24, 16))
    out = tmp_path / "mine.csv"
    out.write_text("name,score\nalice,3\n")
    with pytest.raises(ConfigError, match="is not a csv file describer wrote"):
        await describe_run(capsys, [images.url("/a.jpg")], output=out)
    assert out.read_text() == "name,score\nalice,3\n"
    assert not (tmp_path / "mine.csv.journal.jsonl").exists()
    assert images.hits["/a.jpg"] == 0
