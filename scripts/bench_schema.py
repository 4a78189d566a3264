"""``--schema`` on N images against the Gemini emulator: is every record's ``data`` valid?

Makes N distinct JPEGs (from samples/), scripts a share of them to answer prose instead of
JSON once (``bad_json:1``: describer must ask again), runs ``describe-images FOLDER --schema
SCHEMA -o records.jsonl`` as a child process against the project's emulator, then checks
every record's ``data`` against the schema with the ``jsonschema`` package. Prints records,
valid ``data``, errors by type, model calls (and how many were second calls) and wall time.
Exits 1 unless every record has valid ``data``.

    .venv/bin/python scripts/bench_schema.py                 # 100 images, 10 answer prose once
    .venv/bin/python scripts/bench_schema.py --n 1000 --bad 50 --latency 0.2-0.6
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from jsonschema import validate
from jsonschema.exceptions import ValidationError
from PIL import Image

from describer.emulator import EmulatorSettings, GeminiEmulator

ROOT = Path(__file__).resolve().parent.parent
#: What catalogue tagging asks for: strings, an array, a boolean, an enum, a bounded
#: integer and a nested object.
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "a title of at most eight words"},
        "alt_text": {"type": "string", "description": "one sentence for a screen reader"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 8},
        "contains_text": {"type": "boolean"},
        "setting": {"type": "string", "enum": ["indoor", "outdoor", "unknown"]},
        "people": {"type": "integer", "minimum": 0, "maximum": 50},
        "colours": {"type": "object", "properties": {"main": {"type": "string"}},
                    "required": ["main"]},
    },
    "required": ["title", "alt_text", "tags", "contains_text", "setting", "people"],
}


def make_images(folder: Path, n: int) -> list[bytes]:
    """``n`` distinct 480x360 JPEGs cut from the sample photos; their bytes."""
    photos = sorted((ROOT / "samples").glob("*.jpg"))
    made = []
    for i in range(n):
        with Image.open(photos[i % len(photos)]) as source:
            image = source.convert("RGB").resize((480, 360))
        image.paste((i * 37 % 256, i * 91 % 256, i % 256), (0, 0, 8, 8))  # distinct bytes
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        (folder / f"{i:05d}.jpg").write_bytes(buffer.getvalue())
        made.append(buffer.getvalue())
    return made


def check(records: list[dict[str, object]]) -> tuple[int, Counter[str]]:
    """Records whose ``data`` is valid under SCHEMA; errors by type (``data_invalid`` for a
    record without an error whose data does not validate)."""
    valid, errors = 0, Counter[str]()
    for record in records:
        error = record.get("error")
        if isinstance(error, dict):
            errors[str(error["type"])] += 1
            continue
        try:
            validate(record.get("data"), SCHEMA)
            valid += 1
        except ValidationError:
            errors["data_invalid"] += 1
    return valid, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images")
    parser.add_argument("--bad", type=int, default=10, help="images that answer prose once")
    parser.add_argument("--latency", default="0", help="emulator seconds per call, A-B")
    args = parser.parse_args()
    low, _, high = args.latency.partition("-")
    settings = EmulatorSettings(latency=(float(low), float(high or low)))
    work = Path(tempfile.mkdtemp(prefix="bench-schema-"))
    (work / "images").mkdir()
    images = make_images(work / "images", args.n)
    emulator = GeminiEmulator(settings)
    for data in images[: args.bad]:
        emulator.script(hashlib.sha256(data).hexdigest(), "bad_json:1")
    out = work / "records.jsonl"
    with emulator.in_thread() as base_url:
        env = {**os.environ, "GEMINI_API_KEY": "bench", "GOOGLE_GEMINI_BASE_URL": base_url,
               "DESCRIBER_HOME": str(work / "home")}  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "describe-images"), str(work / "images"),
             "--schema", json.dumps(SCHEMA), "-o", str(out), "--no-progress"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
    records = [json.loads(line) for line in out.read_text().splitlines()]
    valid, errors = check(records)
    calls = emulator.stats.generate_requests
    print(f"--schema on {args.n} images ({args.bad} scripted to answer prose once), "
          f"exit {done.returncode}")  # fmt: skip
    print(f"  records {len(records)}, data valid under the schema {valid} "
          f"({100 * valid / max(1, len(records)):.1f} %), errors {dict(errors) or 'none'}")
    print(f"  model calls {calls} ({calls - len(records)} second calls), wall {wall:.1f} s")
    print(f"  {done.stderr.strip().splitlines()[-1]}")
    if valid != len(records) or len(records) != args.n:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
