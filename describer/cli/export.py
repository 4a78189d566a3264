"""``describe-images export FILE --to parquet|csv|hf``: records as a table
(:mod:`describer.export`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ..export import EXPORT_FORMATS, default_target, export
from .commands import cli
from .options import HELP
from .terminal import EXIT_OK, finish, say


@cli.command("export", context_settings=HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to", type=click.Choice(EXPORT_FORMATS), required=True,
              help="parquet, csv, or hf: a Hugging Face ImageFolder metadata.jsonl.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write [default: FILE with the format's ending; for hf, "
                   "metadata.jsonl in the folder of the described files].")
def export_command(file: Path, to: str, output: Path | None) -> None:  # fmt: skip
    """Write the records of FILE (a describe -o output, or a table's .journal.jsonl) as a
    table: one row per source, the last record of each.

    hf writes metadata.jsonl (file_name relative to its folder, description, model, and id,
    data, meta when present) for the described local files under that folder, as Hugging
    Face datasets' ImageFolder loader reads it. A file describer did not write is never
    replaced.

    Exit codes: 0 written, 2 usage or configuration error.
    """

    async def body() -> int:
        target = output or await asyncio.to_thread(default_target, file, to)
        report = await asyncio.to_thread(export, file, target, to)
        notes = [f"{report.superseded} earlier records of a source replaced by a later one"]
        if to == "hf":
            notes = [f"{report.left_out} left out (not described, or not under the folder)"]
        say(f"describer: wrote {report.rows} rows to {report.path} ({'; '.join(notes)})")
        return EXIT_OK

    finish(body)
