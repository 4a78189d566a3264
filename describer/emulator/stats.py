"""What the emulator saw: counters and records that tests and benchmarks assert on.

``EmulatorStats`` (``emu.stats``) covers the models surface (generateContent and the
embedding calls); ``BatchStats`` (``emu.batch.stats``, the same object as ``emu.files.stats``)
covers the Files and Batch APIs. Both are served as JSON by the control endpoints
(``GET /_emulator/stats``, ``GET /_emulator/batch``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_RECORDS = 200_000  # cap on stats.images / request_times / batch_sizes (memory bound).


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What the model was given in one admitted generate request.

    sha256: hex digest of the first media part's bytes (None for text-only requests);
    mime_type: its declared MIME type; bytes: its size in bytes; width/height: px (0 for
    PDF/audio/video); image_count: media parts in the request; model: model name from the
    URL; prompt: all text parts joined with newlines; system_instruction: its text ("" if
    none); generation_config: the request's generationConfig dict (shared, do not mutate);
    first_part_kind: "image" or "text", the kind of the first part (part order);
    source: how the first media part came ("inline" or "url", media.Media; None if none).
    Also readable as a mapping: ``record["sha256"]``.
    """

    sha256: str | None
    mime_type: str | None
    bytes: int
    width: int
    height: int
    image_count: int
    model: str
    prompt: str
    system_instruction: str
    generation_config: dict[str, Any]
    first_part_kind: str
    source: str | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the record."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class EmulatorStats:
    """Counters of the models surface since start or the last reset (``emu.stats``).

    generate_requests: generateContent calls received (including rejected ones);
    embed_requests: batchEmbedContents/embedContent calls received;
    responses_by_status: HTTP status -> count, models endpoints only;
    rate_limited: 429 answers; day_limited: those of them for a per-day quota (rpd, embed_rpd);
    first_day_limited_at: time.monotonic() when the first of those was answered (None: none
    yet), so a benchmark can time how soon a client stops after it;
    token_limited: those of them for the input-token quota (tpm);
    injected_faults: 503s from ``fault_rate``;
    service_tiers: admitted generate requests by serviceTier ("standard" when absent,
    "flex", "priority"), a Counter;
    flex_shed: flex requests shed (``flex_shed_rate``; counted in responses_by_status too);
    cached_tokens: cachedContentTokenCount summed over the answers sent (implicit cache);
    request_bytes: HTTP body bytes received on models endpoints;
    image_bytes: decoded inline media bytes of admitted generate requests (inlineData and
    Files API parts; not fetched URLs);
    url_parts / url_bytes_fetched: fileData http(s) URL parts of admitted generate requests
    and the bytes the emulator fetched for them (urls.py);
    in_flight / max_in_flight: generate requests being handled now / at most at once
    (covers reading, decoding and the latency sleep);
    batch_sizes: size of every batchEmbedContents call received (rejected ones too);
    images: one ImageRecord per admitted generate request (passed key, quota and decoding;
    includes those then failed by a script or fault);
    request_times: time.monotonic() of each generate request's arrival.
    The three lists keep at most MAX_RECORDS (200,000) entries; beyond that
    ``records_dropped`` counts what was not kept.
    """

    generate_requests: int = 0
    embed_requests: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0
    day_limited: int = 0
    first_day_limited_at: float | None = None
    token_limited: int = 0
    injected_faults: int = 0
    service_tiers: Counter[str] = field(default_factory=Counter)
    flex_shed: int = 0
    cached_tokens: int = 0
    request_bytes: int = 0
    image_bytes: int = 0
    url_parts: int = 0
    url_bytes_fetched: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    records_dropped: int = 0

    def reset(self) -> None:
        """Zero every counter in place, keeping ``in_flight`` (max_in_flight starts there)."""
        fresh = EmulatorStats(in_flight=self.in_flight, max_in_flight=self.in_flight)
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def keep(self, target: list[Any], item: Any) -> None:
        """Append ``item`` to one of the record lists unless MAX_RECORDS is reached."""
        if len(target) < MAX_RECORDS:
            target.append(item)
        else:
            self.records_dropped += 1

    def to_dict(self, lists: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``lists=False`` leaves out images, request_times, batch_sizes."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["responses_by_status"] = {str(k): v for k, v in self.responses_by_status.items()}
        out["service_tiers"] = dict(self.service_tiers)
        if lists:
            out["images"] = [r.to_dict() for r in self.images]
        else:
            for name in ("images", "request_times", "batch_sizes"):
                del out[name]
        return out


@dataclass
class BatchStats:
    """Files API and Batch API counters since start or the last reset (``emu.batch.stats``).

    upload_sessions / upload_chunks: resumable starts / chunk POSTs; files_uploaded,
    file_bytes_uploaded: finalized uploads and their bytes; files_deleted; files_downloaded,
    file_bytes_downloaded; file_parts: Files API fileData parts resolved (generateContent and
    batch lines); url_parts / url_bytes_fetched: fileData http(s) URL parts of batch lines
    answered and the bytes fetched for them (urls.py); batch_jobs_created; batch_requests:
    requests in all created jobs; requests_per_job: one count per created job;
    batch_jobs_refused: creates answered 429 for ``max_concurrent_jobs`` (batches.py);
    max_unfinished: the most jobs PENDING or RUNNING at once (as each create left them);
    batch_polls: batches.get calls; batch_cancels: cancels of unfinished jobs; batch_deletes;
    responses_by_status / request_bytes: of the Files/Batch endpoints only
    (batchGenerateContent is counted in ``emu.stats`` like generateContent).
    """

    upload_sessions: int = 0
    upload_chunks: int = 0
    files_uploaded: int = 0
    file_bytes_uploaded: int = 0
    files_deleted: int = 0
    files_downloaded: int = 0
    file_bytes_downloaded: int = 0
    file_parts: int = 0
    url_parts: int = 0
    url_bytes_fetched: int = 0
    batch_jobs_created: int = 0
    batch_requests: int = 0
    requests_per_job: list[int] = field(default_factory=list)
    batch_jobs_refused: int = 0
    max_unfinished: int = 0
    batch_polls: int = 0
    batch_cancels: int = 0
    batch_deletes: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    request_bytes: int = 0

    def reset(self) -> None:
        """Zero every counter in place."""
        fresh = BatchStats()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return json_ready(self)


def json_ready(counters: Any) -> dict[str, Any]:
    """A dataclass of counters as a JSON-ready dict: Counters as plain dicts, and
    ``responses_by_status`` keyed by the status as text."""
    out = {f.name: getattr(counters, f.name) for f in dataclasses.fields(counters)}
    out = {k: dict(v) if isinstance(v, Counter) else v for k, v in out.items()}
    out["responses_by_status"] = {str(k): v for k, v in counters.responses_by_status.items()}
    return out
