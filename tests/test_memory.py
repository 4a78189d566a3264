"""Memory is bounded by decoded pixels: huge images are charged, decoded one at a time, or
not decoded at all (issue 9)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imaging import decompression_bomb
from PIL import Image, ImageFile

from describer import Config
from describer import prepare as prepare_module
from describer.errors import ItemFailure
from describer.limits import ByteBudget
from describer.model import Source, SourceKind
from describer.pipeline import load
from describer.prepare import prepare

SIDE = 13_000  # 169 MP: over Pillow's warning limit, under its refusal (2 x 89.5 MP)


def huge_bilevel_png(seed: int = 0) -> bytes:
    """A 13000 x 13000 1-bit PNG of ~20 KB (a few set pixels make each file distinct)."""
    image = Image.new("1", (SIDE, SIDE))
    image.putpixel((seed, seed), 1)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return huge_bilevel_png()


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[tuple[int, int], str]]]:
    """Every ``Image.convert`` call as (size converted, mode asked)."""
    seen: list[tuple[tuple[int, int], str]] = []
    real = Image.Image.convert

    def convert(self: Image.Image, mode: str | None = None, *args: Any, **kw: Any) -> Any:
        seen.append((self.size, str(mode)))
        return real(self, mode, *args, **kw)

    monkeypatch.setattr(Image.Image, "convert", convert)
    yield seen


def _config(**options: Any) -> Config:
    return Config(api_key="unused", **options)


def test_a_huge_bilevel_png_is_sent_as_it_is_never_decoded(
    huge_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def load_pixels(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_pixels)
    sent = prepare(huge_png)
    assert sent.data == huge_png and sent.original is None
    assert (sent.media.mime_type, sent.media.width, sent.media.height) == (
        "image/png", SIDE, SIDE,
    )
    assert decoded == []  # not one pixel decoded locally


async def test_downscaling_charges_the_decoded_pixels_before_decoding_and_never_makes_rgb(
    huge_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    conversions: list[tuple[tuple[int, int], str]],
) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(huge_png)
    budget = ByteBudget(None)
    lease = budget.lease()
    held_at_decode: list[int] = []
    real_load = ImageFile.ImageFile.load

    def load_pixels(self: ImageFile.ImageFile) -> Any:
        if self.size == (SIDE, SIDE):
            held_at_decode.append(lease.held)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_pixels)
    config = _config(max_side=1024)
    sent = await load(Source(str(path), SourceKind.PATH, str(path)), None, config, lease)  # type: ignore[arg-type]
    pixels = SIDE * SIDE
    # the 1-bit frame (1 byte a pixel in Pillow) and its 8-bit grey copy, on top of the file
    assert held_at_decode and held_at_decode[0] == len(huge_png) + 2 * pixels
    assert ((SIDE, SIDE), "RGB") not in conversions  # RGB would be 4 bytes a pixel: 676 MB
    assert (sent.media.width, sent.media.height, sent.media.mime_type) == (
        1024, 1024, "image/jpeg",
    )
    # the decoded pixels and the original are given back once done: it holds what it sends
    assert lease.held == len(sent.data) == sent.media.bytes


async def test_huge_decodes_in_a_folder_run_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [tmp_path / f"scan{i}.png" for i in range(2)]
    for i, path in enumerate(files):
        path.write_bytes(huge_bilevel_png(seed=i))
    arrived: set[int] = set()  # threads at the large-decode gate or inside a huge decode
    state = {"active": 0, "most": 0, "first": True}
    changed = threading.Condition()
    real_load = ImageFile.ImageFile.load
    real_gate = getattr(prepare_module, "LARGE_DECODE", threading.Lock())

    class Gate:
        """The real gate, noting who arrives at it."""

        def __enter__(self) -> None:
            with changed:
                arrived.add(threading.get_ident())
                changed.notify_all()
            real_gate.acquire()

        def __exit__(self, *exc: object) -> None:
            real_gate.release()

    def load_pixels(self: ImageFile.ImageFile) -> Any:
        if self.size != (SIDE, SIDE):
            return real_load(self)
        with changed:
            arrived.add(threading.get_ident())
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            changed.notify_all()
            if state["first"]:  # hold the first decode until the other item has arrived
                state["first"] = False
                assert changed.wait_for(lambda: len(arrived) == len(files), timeout=60)
        try:
            return real_load(self)
        finally:
            with changed:
                state["active"] -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_pixels)
    monkeypatch.setattr(prepare_module, "LARGE_DECODE", Gate(), raising=False)
    config = _config(max_side=1024, memory_budget=0)  # no byte budget: the gate alone
    sources = [Source(str(p), SourceKind.PATH, str(p)) for p in files]
    sent = await asyncio.gather(*(load(s, None, config) for s in sources))  # type: ignore[arg-type]
    assert [(p.media.width, p.media.height) for p in sent] == [(1024, 1024)] * len(files)
    assert state["most"] == 1


def test_an_image_over_the_pixel_limit_is_too_large_naming_its_pixels() -> None:
    with pytest.raises(ItemFailure) as refused:
        prepare(decompression_bomb(), max_side=1024)
    assert refused.value.error.type.value == "too_large"
    assert refused.value.error.message == (
        "image too large: 1,600,000,000 pixels, over the limit of 178,956,970 pixels"
    )


def test_a_4_3_photo_shrunk_to_1536_is_decoded_at_half_size_not_full_size() -> None:
    from imaging import jpeg

    from describer.prepare import plan

    found = plan(jpeg(4000, 3000), max_side=1536)
    # 2000x1500 covers the 1536x1152 it is shrunk to; a 1536 square would not (1500 < 1536)
    assert found.decode_size == (2000, 1500)
    assert found.decoded_bytes == 2000 * 1500 * 4
    assert prepare(jpeg(4000, 3000), max_side=1536).media.width == 1536
