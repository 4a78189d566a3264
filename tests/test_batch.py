"""Batch API mode, Files API uploads, other media and costs, end to end against the emulator."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, cli, describe_run
from imaging import jpeg, sha256

from describer import Config, gemini, pipeline
from describer.batch import MAX_FILE_BYTES, MAX_REQUESTS, jobs_dir
from describer.batch import submit as describer_submit
from describer.cli.batch import fetch_main, submit_main
from describer.cost import estimate
from describer.emulator import GeminiEmulator


@pytest.fixture
def batch_emulator() -> GeminiEmulator:
    """An emulator to run on its own thread, for describe-images processes (their job records
    go to the test's DESCRIBER_HOME: see conftest.isolated_env)."""
    return GeminiEmulator()


def _env(emulator: GeminiEmulator) -> dict[str, str]:
    return {"GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_submit_status_fetch_from_fresh_processes(
    batch_emulator: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    emulator = batch_emulator
    bad = jpeg(seed=2)
    folder = write_files({"a.jpg": jpeg(seed=0), "b.jpg": jpeg(seed=1), "bad.jpg": bad,
                          "broken.jpg": b"\xff\xd8\xff truncated"})
    emulator.script(sha256(bad), "fail:400")
    out = tmp_path / "out.jsonl"
    with emulator.in_thread():
        env = _env(emulator)
        submitted = cli(["batch", "submit", str(folder), "-p", "3 words"], env)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        assert "3 requests in 1 job(s), 1 failed before submission" in submitted.stderr
        early = cli(["batch", "fetch", job, "-o", str(out)], env)
        assert early.returncode == 2 and "add --wait" in early.stderr  # still PENDING
        status = cli(["batch", "status", job], env)
        assert "JOB_STATE_RUNNING" in status.stdout
        fetched = cli(["batch", "fetch", job, "-o", str(out), "--wait", "--poll-interval",
                       "0.05"], env)
    assert fetched.returncode == 1, fetched.stderr  # the scripted 400 and the broken file
    records = {r["source"]: r for r in _lines(out.read_text())}
    assert set(records) == {str(folder / n) for n in ("a.jpg", "b.jpg", "bad.jpg", "broken.jpg")}
    assert records[str(folder / "a.jpg")]["description"].startswith("A 320x240 JPEG")
    assert records[str(folder / "a.jpg")]["usage"]["input_tokens"] > 258
    assert records[str(folder / "bad.jpg")]["error"]["type"] == "api_error"
    assert "INVALID_ARGUMENT" in records[str(folder / "bad.jpg")]["error"]["message"]
    assert records[str(folder / "broken.jpg")]["error"]["type"] == "corrupt_image"
    assert "Batch API -50%" in fetched.stderr
    assert emulator.batch.stats.batch_jobs_created == 1


async def _submit_and_fetch(
    capsys: pytest.CaptureFixture[str], folder: Path, out: Path, **options: Any
) -> tuple[str, dict[str, dict[str, Any]]]:
    """``batch submit FOLDER`` then ``batch fetch JOB -o OUT --wait`` in this event loop:
    submit's stderr, and the fetched records by source."""
    config = Config(output=out, **options)
    assert await submit_main((str(folder),), config, (MAX_FILE_BYTES, MAX_REQUESTS), None) == 0
    job = capsys.readouterr()
    await fetch_main(job.out.strip(), config, wait=0.0)
    return job.err, {r["source"]: r for r in _lines(out.read_text())}


async def test_fetch_keeps_media_attempts_and_the_records_of_items_failed_before_submission(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    good, refused = jpeg(320, 240, seed=0), jpeg(200, 100, seed=1)
    broken = jpeg(seed=2)[:1000]  # cut short
    gemini_env.script(sha256(refused), "fail:400")
    folder = write_files({"good.jpg": good, "refused.jpg": refused, "broken.jpg": broken})
    _, records = await _submit_and_fetch(
        capsys, folder, tmp_path / "out.jsonl", model="gemini-test", prompt="3 words"
    )
    described, failed, before = (records[str(folder / n)] for n in
                                 ("good.jpg", "refused.jpg", "broken.jpg"))
    assert described["error"] is None and failed["error"]["type"] == "api_error"
    assert described["image"] == {"mime_type": "image/jpeg", "width": 320, "height": 240,
                                  "bytes": len(good), "sent_as": "bytes", "original": None}
    assert failed["image"] == {"mime_type": "image/jpeg", "width": 200, "height": 100,
                               "bytes": len(refused), "sent_as": "bytes",
                               "original": None}
    assert described["attempts"] == failed["attempts"] == 1  # one request each, in the batch
    assert {k: before[k] for k in ("error", "model", "prompt", "image", "attempts")} == {
        "error": {"type": "corrupt_image",
                  "message": "truncated JPEG file (1,000 bytes)"},
        "model": "gemini-test", "prompt": "3 words", "image": None, "attempts": 0,
    }


async def test_a_bug_loading_one_item_costs_it_an_internal_error_and_the_others_are_submitted(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {f"{i}.jpg": jpeg(seed=i) for i in range(3)}
    folder = write_files(files)
    real_plan = pipeline.plan

    def plan_with_a_bug(data: bytes, *args: Any) -> Any:
        # Stands in for a bug in a stage (an exception no stage expects), on one item only;
        # patching the stage is the only way to make describer have a bug on purpose. The
        # prepare stage's first step (reading the header) is the one every image goes through.
        if data == files["1.jpg"]:
            raise RuntimeError("a bug on this item")
        return real_plan(data, *args)

    monkeypatch.setattr(pipeline, "plan", plan_with_a_bug)
    submitted, records = await _submit_and_fetch(capsys, folder, tmp_path / "out.jsonl")
    assert "2 requests in 1 job(s), 1 failed before submission" in submitted
    assert gemini_env.batch.stats.requests_per_job == [2]
    assert sorted(records) == [str(folder / n) for n in sorted(files)]  # one record each
    assert records[str(folder / "1.jpg")]["error"] == {
        "type": "internal_error", "message": "RuntimeError: a bug on this item"
    }
    assert all(records[str(folder / n)]["error"] is None for n in ("0.jpg", "2.jpg"))


def test_large_inputs_split_into_several_jobs(
    batch_emulator: GeminiEmulator, write_files, tmp_path: Path
) -> None:
    emulator = batch_emulator
    folder = write_files({f"{i}.jpg": jpeg(64, 48, seed=i) for i in range(7)})
    out = tmp_path / "out.jsonl"
    with emulator.in_thread():
        env = _env(emulator)
        done = cli(["batch", "submit", str(folder), "--batch-max-requests", "3", "--wait",
                    "--poll-interval", "0.01", "-o", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert "7 requests in 3 job(s)" in done.stderr
    assert emulator.batch.stats.requests_per_job == [3, 3, 1]
    assert len({r["source"] for r in _lines(out.read_text())}) == 7


def test_cancel(batch_emulator: GeminiEmulator, write_files) -> None:
    emulator = batch_emulator
    folder = write_files({"a.jpg": jpeg()})
    with emulator.in_thread():
        env = _env(emulator)
        job = cli(["batch", "submit", str(folder)], env).stdout.strip()
        cancelled = cli(["batch", "cancel", job], env)
        listed = cli(["batch", "list"], env)
        fetched = cli(["batch", "fetch", job], env)
    assert cancelled.returncode == 0 and "JOB_STATE_CANCELLED" in cancelled.stdout
    assert job in listed.stdout and emulator.batch.stats.batch_cancels == 1
    [record] = _lines(fetched.stdout)
    assert record["error"]["message"].endswith("ended JOB_STATE_CANCELLED")


def test_unknown_job_is_a_clear_error() -> None:
    done = cli(["batch", "status", "nope"], {"GEMINI_API_KEY": TEST_KEY})
    assert done.returncode == 2 and "no batch job 'nope'" in done.stderr


async def test_media_over_the_inline_limit_goes_by_the_files_api(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    big, small = jpeg(800, 600, seed=1), jpeg(64, 48, seed=2)
    folder = write_files({"big.jpg": big, "small.jpg": small})
    out = await describe_run(capsys, [str(folder)], inline_limit=len(small) + 1)
    assert out.code == 0
    stats = gemini_env.batch.stats
    assert stats.files_uploaded == 1 and stats.file_bytes_uploaded == len(big)
    assert stats.file_parts == 1 and stats.files_deleted == 1  # referenced once, then deleted
    assert not gemini_env.files.live
    assert {r.sha256 for r in gemini_env.stats.images} == {sha256(big), sha256(small)}
    sent = {Path(r["source"]).name: r["image"]["sent_as"] for r in out.records}
    assert sent == {"big.jpg": "file", "small.jpg": "bytes"}  # the record says how it went


def _pdf(pages: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>",
               *["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"] * pages]
    body = b"%PDF-1.4\n"
    for number, obj in enumerate(objects, start=1):
        body += f"{number} 0 obj\n{obj}\nendobj\n".encode()
    return body + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def _wav(seconds: float, rate: int = 8000) -> bytes:
    samples = b"\x00\x00" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(samples))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(samples)) + b"WAVE" + chunks + samples


async def test_pdf_and_audio_are_described_with_media(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"doc.pdf": _pdf(3), "talk.wav": _wav(1.0), "photo.jpg": jpeg(),
                          "clip.txt": b"not media"})
    images_only = await describe_run(capsys, [str(folder)])
    assert list(images_only.by_source()) == [str(folder / "photo.jpg")]
    assert "3 skipped (not images)" in images_only.stderr and " images/s" in images_only.stderr
    out = await describe_run(capsys, [str(folder)], media=frozenset({"image", "pdf", "audio"}))
    got = out.by_source()
    assert out.code == 0 and len(got) == 3
    # the summary counts items, not images, once more than images are taken
    assert "1 skipped (not image/pdf/audio)" in out.stderr and " items/s" in out.stderr
    assert "images" not in out.stderr
    pdf = got[str(folder / "doc.pdf")]
    assert pdf["image"] == {"mime_type": "application/pdf", "width": None, "height": None,
                            "bytes": len(_pdf(3)), "pages": 3, "sent_as": "bytes",
                            "original": None}
    assert got[str(folder / "talk.wav")]["image"]["mime_type"] == "audio/wav"
    sent = {r.mime_type for r in gemini_env.stats.images}
    assert {"application/pdf", "audio/wav"} <= sent


async def test_a_pdf_given_without_media_pdf_is_an_unsupported_format_record(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"doc.pdf": _pdf(1)})
    out = await describe_run(capsys, [str(folder / "doc.pdf")])
    assert out.records[0]["error"] == {
        "type": "unsupported_format",
        "message": "application/pdf is pdf: add pdf to --media to take it",
    }


async def test_summary_shows_token_totals_and_cost(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({f"{i}.jpg": jpeg(seed=i) for i in range(3)})
    out = await describe_run(capsys, [str(folder)], model="gemini-3.5-flash")
    tokens_in = sum(r["usage"]["input_tokens"] for r in out.records)
    tokens_out = sum(r["usage"]["output_tokens"] for r in out.records)
    expected = (tokens_in * 1.50 + tokens_out * 9.00) / 1e6
    assert f"tokens {tokens_in:,} in / {tokens_out:,} out" in out.stderr
    assert f"est. ${expected:.4f} (gemini-3.5-flash at $1.50/$9.00 per 1M)" in out.stderr
    batch = estimate("gemini-3.5-flash", tokens_in, tokens_out, batch=True)
    assert batch is not None and math.isclose(batch, expected / 2)


async def test_media_resolution_reaches_the_request(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({"a.jpg": jpeg()})
    await describe_run(capsys, [str(folder)], media_resolution="low")
    assert gemini_env.stats.images[0].generation_config == {
        "mediaResolution": "MEDIA_RESOLUTION_LOW", "thinkingConfig": {"thinking_level": "LOW"},
    }


# ----- issue 9: a submission that fails part-way --------------------------------------------
# Policy: keep what was submitted. Items that could not be sent become "not submitted: ..."
# error records in the job's errors file; the JOB id is printed whenever a job exists (exit 1);
# when no job exists, every local file of the submission is removed (exit 2).


def _eleven(write_files) -> tuple[Path, list[str]]:
    """A folder of 11 images, their sources in key order (a folder is read sorted)."""
    names = [f"{i:02d}.jpg" for i in range(11)]
    folder = write_files({name: jpeg(64, 48, seed=i) for i, name in enumerate(names)})
    return folder, [str(folder / name) for name in names]


async def test_second_of_two_uploads_failing_keeps_the_first_job_and_prints_its_id(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder, _ = _eleven(write_files)
    gemini_env.files.configure(fail_uploads_from=2)  # the second request file, retries too
    config = Config(max_attempts=2, retry_wait=0.0)
    code = await submit_main((str(folder),), config, (MAX_FILE_BYTES, 6), None)
    out = capsys.readouterr()
    assert code == 1, out.err
    job = out.out.strip()
    assert job and gemini_env.batch.stats.batch_jobs_created == 1
    assert gemini_env.batch.stats.requests_per_job == [6]
    assert (f"describer: batch {job}: 6 requests in 1 job(s), 0 failed before submission, "
            "5 not submitted: batch submission failed: ") in out.err
    listed = cli(["batch", "list"], {})
    assert listed.stdout.startswith(f"{job}  JOB_STATE_PENDING"), (listed.stdout, listed.stderr)
    assert sorted(p.name for p in jobs_dir().iterdir()) == [
        f"{job}.errors.jsonl", f"{job}.json", f"{job}.keys.jsonl"]  # no part file left


async def test_fetch_after_a_partial_submission_reports_the_unsent_items_as_not_submitted(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    folder, sources = _eleven(write_files)
    gemini_env.files.configure(fail_uploads_from=2)
    out = tmp_path / "out.jsonl"
    config = Config(max_attempts=2, retry_wait=0.0, output=out)
    await submit_main((str(folder),), config, (MAX_FILE_BYTES, 6), None)
    job = capsys.readouterr().out.strip()
    assert await fetch_main(job, config, wait=0.0) == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_source = {r["source"]: r for r in records}
    assert len(records) == len(by_source) == 11 and set(by_source) == set(sources)
    # keys follow the order items finish loading: which 6 were sent is not fixed
    unsent = [s for s in sources if by_source[s]["error"] is not None]
    assert len(unsent) == 5
    for source in unsent:
        error = by_source[source]["error"]
        assert error["type"] == "api_error"
        assert error["message"].startswith("not submitted: batch submission failed: ")
        assert "UNAVAILABLE" in error["message"] and by_source[source]["attempts"] == 0
    assert "6 described, 5 failed (5 api_error)" in capsys.readouterr().err


def test_every_upload_failing_leaves_no_local_files_and_no_job(
    batch_emulator: GeminiEmulator, write_files
) -> None:
    emulator = batch_emulator
    folder, _ = _eleven(write_files)
    emulator.files.configure(fail_uploads_from=1)
    with emulator.in_thread():
        env = _env(emulator)
        done = cli(["batch", "submit", str(folder), "--batch-max-requests", "6",
                    "--max-attempts", "2", "--retry-wait", "0"], env)
        listed = cli(["batch", "list"], env)
    assert done.returncode == 2 and done.stdout == ""
    assert not jobs_dir().exists() or not list(jobs_dir().iterdir())  # no part, keys, errors
    assert done.stderr.splitlines() == [
        "describe-images: error: batch submission failed: 503 UNAVAILABLE: The service is "
        "currently unavailable. (nothing was submitted: no job was created)"]
    assert emulator.batch.stats.batch_jobs_created == 0
    assert listed.returncode == 0 and listed.stdout == ""


def test_list_shows_the_files_of_a_submission_that_left_no_record() -> None:
    # What a submission killed before its first job (or an older describer) leaves behind.
    jobs_dir().mkdir(parents=True)
    for suffix in (".part0.jsonl", ".keys.jsonl", ".errors.jsonl"):
        (jobs_dir() / f"20261122-050000-abcd{suffix}").write_text("")
    listed = cli(["batch", "list"], {})
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "20261122-050000-abcd  INCOMPLETE: no job was created; leftover files: "
        "20261122-050000-abcd.part0.jsonl, 20261122-050000-abcd.keys.jsonl, "
        "20261122-050000-abcd.errors.jsonl"
    ]


async def test_fetch_reports_keys_no_job_holds_as_not_submitted(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files, tmp_path: Path
) -> None:
    # A record whose keys file runs past its jobs' requests: a submission interrupted after
    # its first job, or written by a describer older than the "not submitted" records.
    folder = write_files({"a.jpg": jpeg(seed=0)})
    out = tmp_path / "out.jsonl"
    config = Config(output=out)
    assert await submit_main((str(folder),), config, (MAX_FILE_BYTES, MAX_REQUESTS), None) == 0
    job = capsys.readouterr().out.strip()
    keys = jobs_dir() / f"{job}.keys.jsonl"
    entry = json.loads(keys.read_text())
    keys.write_text(keys.read_text() + json.dumps({**entry, "key": "k000000001",
                                                   "source": "never-sent.jpg"}) + "\n")
    assert await fetch_main(job, config, wait=0.0) == 1
    records = {r["source"]: r for r in _lines(out.read_text())}
    assert records["never-sent.jpg"]["error"] == {
        "type": "api_error",
        "message": "not submitted: the submission stopped before this request was sent",
    }
    assert records["never-sent.jpg"]["attempts"] == 0
    assert records[str(folder / "a.jpg")]["error"] is None


async def test_media_uploaded_for_items_not_sent_are_deleted(
    gemini_env: GeminiEmulator, capsys: pytest.CaptureFixture[str], write_files
) -> None:
    folder = write_files({f"{i}.jpg": jpeg(64, 48, seed=i) for i in range(3)})
    # uploads 1-3: the three media; 4: part 0's request file (2 requests); 5: part 1's
    gemini_env.files.configure(fail_uploads_from=5)
    config = Config(max_attempts=1, inline_limit=1)
    assert await submit_main((str(folder),), config, (MAX_FILE_BYTES, 2), None) == 1
    assert "2 requests in 1 job(s), 0 failed before submission, 1 not submitted" in (
        capsys.readouterr().err
    )
    stats = gemini_env.batch.stats
    assert stats.files_uploaded == 4 and stats.files_deleted == 1  # the unsent item's media
    assert gemini_env.files.live == 3  # part 0's request file and the media it references


async def test_an_interrupted_submission_keeps_its_jobs_visible_and_fetchable(
    gemini_env: GeminiEmulator, write_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from describer.batch import JobRecord, list_records, requests, submit

    folder, sources = _eleven(write_files)
    real_create_job, calls = requests.create_job, []

    async def interrupted_on_the_second_job(*args: Any) -> Any:
        # Ctrl-C reaches the submission as a cancellation of its task; patching the call is
        # the only way to deliver one at this exact point without a signal race.
        calls.append(args)
        if len(calls) == 2:
            raise asyncio.CancelledError
        return await real_create_job(*args)

    monkeypatch.setattr(requests, "create_job", interrupted_on_the_second_job)
    config = Config(output=tmp_path / "out.jsonl")
    async with gemini.connect(config) as connection:
        with pytest.raises(asyncio.CancelledError):
            await submit((str(folder),), config, connection, MAX_FILE_BYTES, 6)
    [record] = list_records()
    assert (record.submitted, record.not_submitted, len(record.parts)) == (6, 5, 1)
    assert record.failure == "interrupted before every request was sent"
    assert not list(jobs_dir().glob("*.part*.jsonl"))
    assert await fetch_main(record.id, config, wait=0.0) == 1
    by_source = {r["source"]: r for r in _lines((tmp_path / "out.jsonl").read_text())}
    assert set(by_source) == set(sources)
    unsent = [r for r in by_source.values() if r["error"]]
    assert len(unsent) == 5 and all(r["error"]["message"].startswith("not submitted: ")
                                    for r in unsent)
    assert JobRecord.load(record.id).parts[0].state == "JOB_STATE_SUCCEEDED"


async def test_a_job_that_cannot_be_created_leaves_no_request_file_uploaded(
    gemini_env: GeminiEmulator, write_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    from describer.errors import ConfigError, ItemFailure
    from describer.model import ErrorType

    folder, _ = _eleven(write_files)

    async def refused(*args: Any) -> Any:
        # The emulator creates every job whose input file exists; patching the call is the
        # only way to have batches.create refused after the request file was uploaded.
        raise ItemFailure(ErrorType.API_ERROR, "400 INVALID_ARGUMENT: refused")

    monkeypatch.setattr(gemini, "create_batch", refused)
    config = Config(max_attempts=1)
    async with gemini.connect(config) as connection:
        with pytest.raises(ConfigError, match=r"refused \(nothing was submitted"):
            await describer_submit((str(folder),), config, connection, MAX_FILE_BYTES, 6)
    stats = gemini_env.batch.stats
    assert stats.files_uploaded == 1 and stats.files_deleted == 1 and not gemini_env.files.live
    assert not jobs_dir().exists() or not list(jobs_dir().iterdir())
