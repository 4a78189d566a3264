"""Table sources: CSV, TSV, Parquet and JSONL rows in, records carrying id and meta out."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import jpeg

from describer import Config
from describer.emulator import GeminiEmulator, ImageServer
from describer.errors import ConfigError
from describer.model import Result
from describer.sources import SourceReader


def write_csv(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def serve(images: ImageServer, count: int, distinct: int = 5) -> list[str]:
    """``count`` URLs on the image server, ``distinct`` different small JPEGs among them."""
    bodies = [jpeg(24, 16, seed=i) for i in range(distinct)]
    for i in range(count):
        images.add(f"/p{i}.jpg", bodies[i % distinct])
    return [images.url(f"/p{i}.jpg") for i in range(count)]


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_csv_of_1000_rows_comes_back_as_parquet_with_id_meta_and_description(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    urls = serve(images, 1000)
    licenses = {f"id-{i}": ["cc-by", "cc0", "mit"][i % 3] for i in range(1000)}
    rows = [[f"id-{i}", url, licenses[f"id-{i}"]] for i, url in enumerate(urls)]
    table = write_csv(tmp_path / "in.csv", ["id", "url", "license"], rows)
    out = tmp_path / "out.parquet"
    outcome = await describe_run(
        capsys, [str(table)], output=out, id_col="id", keep_cols="license", concurrency=32
    )
    assert outcome.code == 0, outcome.stderr
    got = pq.read_table(out).to_pylist()
    assert len(got) == 1000
    assert {row["id"]: row["meta"]["license"] for row in got} == licenses
    assert all(row["description"] and row["error"] is None for row in got)
    assert {row["id"]: row["source"] for row in got} == {r[0]: r[1] for r in rows}


async def test_rows_without_a_usable_source_get_one_error_record_each(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (good,) = serve(images, 1)
    (tmp_path / "folder").mkdir()
    rows = [["a", good, "x"], ["b", "", "y"], ["c", "ftp://host/p.jpg", "z"],
            ["d", str(tmp_path / "folder"), "w"], ["e", str(tmp_path / "missing.jpg"), "v"],
            ["", good + "?again", "u"]]  # fmt: skip
    table = write_csv(tmp_path / "in.tsv", ["key", "image", "note"], rows, delimiter="\t")
    outcome = await describe_run(
        capsys, [str(table)], url_col="image", id_col="key", keep_cols="all"
    )
    assert outcome.code == 1
    by_note = {r["meta"]["note"]: r for r in outcome.records}
    assert len(outcome.records) == 6
    assert by_note["x"]["error"] is None and by_note["x"]["id"] == "a"
    for note, says in [("y", "row 2: no value in column 'image'"), ("z", "unsupported scheme"),
                       ("w", "a folder"), ("v", "neither an http(s) URL"),
                       ("u", "row 6: no value in the id column 'key'")]:  # fmt: skip
        assert by_note[note]["error"]["type"] == "invalid_source"
        assert says in by_note[note]["error"]["message"]
    assert by_note["y"]["id"] == "b" and by_note["y"]["source"].endswith("in.tsv row 2")


async def test_a_jsonl_table_and_its_bad_lines(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    urls = serve(images, 2)
    lines = [json.dumps({"url": urls[0], "n": 1, "tags": ["a", "b"], "x": float("nan")}),
             "[1, 2]", "", json.dumps({"url": urls[1], "n": 2})]  # fmt: skip
    table = tmp_path / "in.jsonl"
    table.write_text("\n".join(lines) + "\n")
    outcome = await describe_run(capsys, [str(table)], keep_cols="all")
    by_source = outcome.by_source()
    assert by_source[urls[0]]["meta"] == {"n": 1, "tags": ["a", "b"], "x": None}
    assert by_source[urls[1]]["meta"] == {"n": 2}
    assert by_source[f"{table} row 2"]["error"]["message"] == "row 2: not a JSON object"
    assert "id" not in by_source[urls[0]]


def test_a_missing_column_stops_the_run_with_one_line_and_exit_2(
    gemini_env: GeminiEmulator, tmp_path: Path
) -> None:
    table = write_csv(tmp_path / "in.csv", ["id", "link"], [["1", "http://example.com/a.jpg"]])
    env = {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": gemini_env.base_url}
    done = cli([str(table), "--no-progress"], env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "has no column 'url' (its columns: id, link)" in done.stderr
    done = cli([str(table), "--url-col", "link", "--id-col", "key"], env)
    assert done.returncode == 2 and "has no column 'key'" in done.stderr
    assert gemini_env.stats.generate_requests == 0
    # found before the first source, even when the table comes after other sources
    sources = SourceReader.of(Config()).iter(["http://example.com/a.jpg", str(table)])
    with pytest.raises(ConfigError, match="has no column 'url'"):
        next(sources)


def test_a_csv_of_bare_urls_is_told_to_use_input_format_list(tmp_path: Path) -> None:
    listing = tmp_path / "urls.csv"
    listing.write_text("https://example.com/a.jpg\nhttps://example.com/b.jpg\n")
    with pytest.raises(ConfigError, match=r"starts with a URL, not a header row: .* "
                                          r"--input-format list"):  # fmt: skip
        next(SourceReader.of(Config()).iter([str(listing)]))
    listed = list(SourceReader.of(Config(input_format="list")).iter([str(listing)]))
    assert [s.ref for s in listed] == ["https://example.com/a.jpg", "https://example.com/b.jpg"]


def test_a_record_keeps_id_and_meta_through_json() -> None:
    record = Result("a.jpg", "m", "p", description="d", id="7", meta={"license": "cc0"})
    line = record.to_json()
    assert (line["id"], line["meta"]) == ("7", {"license": "cc0"})
    back = Result.from_json(json.loads(record.to_line()))
    assert (back.id, back.meta) == ("7", {"license": "cc0"})
    assert "id" not in Result("a.jpg", "m", "p").to_json()
    assert "meta" not in Result("a.jpg", "m", "p").to_json()


def test_describers_own_output_is_not_taken_as_a_table(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    record = {"source": "a.jpg", "description": "x", "error": None, "model": "m",
              "prompt": "p", "usage": None}  # fmt: skip
    output.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match=r"describer.s own output .* give it as -o"):
        list(SourceReader.of(Config()).iter([str(output)]))


def test_a_parquet_source_is_read_a_batch_at_a_time_and_only_its_needed_columns(
    tmp_path: Path,
) -> None:
    rows = 60_000  # the url column alone is 6.4 MB decoded

    def table_url(i: int) -> str:
        return f"https://example.com/{'x' * 80}/{i}.jpg"

    table = pa.table({
        "url": [table_url(i) for i in range(rows)],
        "caption": ["c" * 1000] * rows,  # 60 MB decoded (4 MB a batch), never needed here
        "id": list(range(rows)),
    })  # fmt: skip
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=2_000)
    del table
    before = pa.total_allocated_bytes()
    sources = SourceReader.of(Config(id_col="id")).iter([str(path)])
    first = next(sources)
    held = pa.total_allocated_bytes() - before
    assert (first.location, first.id, first.meta) == (table_url(0), "0", None)
    assert held < 3_500_000, f"{held} bytes held for the first row"
    assert sum(1 for _ in sources) == rows - 1


async def test_a_rerun_skips_rows_by_id_and_repeats_of_an_id_are_described_once(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    urls = serve(images, 6)
    out = tmp_path / "out.jsonl"
    first = write_csv(tmp_path / "a.csv", ["id", "url"], [["1", urls[0]], ["2", urls[1]]])
    assert (await describe_run(capsys, [str(first)], output=out, id_col="id")).code == 0
    # the same ids under new URLs are done; id 3 is new, and its repeat is dropped
    again = write_csv(tmp_path / "b.csv", ["id", "url"],
                      [["1", urls[2]], ["2", urls[3]], ["3", urls[4]], ["3", urls[5]]])
    outcome = await describe_run(capsys, [str(again)], output=out, id_col="id")
    assert outcome.code == 0
    assert sorted(r["id"] for r in read_records(out)) == ["1", "2", "3"]
    assert "2 sources already described are skipped" in outcome.stderr
    assert [images.hits[f"/p{i}.jpg"] for i in range(6)] == [1, 1, 0, 0, 1, 0]


async def test_stdin_as_a_table_and_a_csv_read_as_a_list(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from describer.cli.commands import describe_main

    urls = serve(images, 2)
    stdin = io.StringIO(f"url,who\n{urls[0]},me\n")
    code = await describe_main(
        Config(input_format="csv", keep_cols="who", progress=False), ["-"], stdin
    )
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["meta"] == {"who": "me"} and record["source"] == urls[0]
    listed = tmp_path / "old.csv"
    listed.write_text(f"{urls[1]}\n")
    outcome = await describe_run(capsys, [str(listed)], input_format="list")
    assert [r["source"] for r in outcome.records] == [urls[1]]


async def test_batch_submit_reads_a_table_and_fetch_writes_id_and_meta(
    gemini_env: GeminiEmulator, images: ImageServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from describer.batch import MAX_FILE_BYTES, MAX_REQUESTS
    from describer.cli.batch import fetch_main, submit_main

    (url,) = serve(images, 1)
    table = write_csv(tmp_path / "in.csv", ["id", "url", "license"],
                      [["a", url, "cc0"], ["b", "ftp://x/y.jpg", "mit"]])  # fmt: skip
    out = tmp_path / "out.parquet"
    config = Config(output=out, id_col="id", keep_cols="license")
    assert await submit_main((str(table),), config, (MAX_FILE_BYTES, MAX_REQUESTS), None) == 0
    job = capsys.readouterr().out.strip()
    assert await fetch_main(job, config, wait=0.0) == 1  # the ftp row failed
    rows = {row["id"]: row for row in pq.read_table(out).to_pylist()}
    assert rows["a"]["description"] and rows["a"]["meta"] == {"license": "cc0"}
    assert rows["b"]["error"]["type"] == "invalid_source"
    assert rows["b"]["meta"] == {"license": "mit"}
