"""A generated set of scanned pages with known text, English and Chinese, tables included:
rendered at 200 or 300 dpi with blur, grain, specks and a slight rotation, saved as image-only
PDFs and as PNG/TIFF files. Used by tests/integration/test_ocr.py and bench/ocr.py.

Every page carries one fact with a unique code, and a question that finds it, so retrieval of
each page's facts can be measured too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)


@dataclass(frozen=True)
class ScanPage:
    lang: str
    title: str
    paragraphs: tuple[str, ...]
    table: tuple[tuple[str, ...], ...]
    question: str
    answer: str
    """A string on the page that answers ``question`` (what retrieval must find)."""

    @property
    def text(self) -> str:
        cells = [" ".join(row) for row in self.table]
        return "\n".join([self.title, *self.paragraphs, *cells])


_EN_TOPICS = [
    ("Parking permits", "parking permit", "EUR per month"),
    ("Laptop replacement", "laptop replacement", "working days"),
    ("Visitor badges", "visitor badge", "hours"),
    ("Printer toner", "toner order", "cartridges"),
    ("Travel insurance", "travel insurance claim", "EUR"),
    ("Desk booking", "desk booking", "days ahead"),
    ("Locker keys", "locker key deposit", "EUR"),
    ("Bicycle storage", "bicycle storage", "places"),
]
_ZH_TOPICS = [
    ("停车证办理", "停车证", "元每月"),
    ("笔记本电脑更换", "电脑更换", "个工作日"),
    ("访客证件", "访客证", "小时"),
    ("打印机墨盒", "墨盒申领", "盒"),
    ("差旅保险", "差旅保险理赔", "元"),
    ("工位预订", "工位预订", "天"),
    ("储物柜钥匙", "储物柜押金", "元"),
    ("自行车停放", "自行车停放", "个车位"),
]
_OFFICES_EN = ["Oslo", "Berlin", "London", "Madrid", "Porto", "Warsaw"]
_OFFICES_ZH = ["上海", "北京", "深圳", "成都", "杭州", "南京"]


def scan_pages(count: int, lang: str, seed: int = 0) -> list[ScanPage]:
    """``count`` pages in ``lang`` (``en`` or ``zh``), each with a unique form code."""
    rng = random.Random(f"{lang}-{seed}")
    pages = []
    for i in range(count):
        code_number = rng.randint(100, 999) * 10 + i % 10
        amount = rng.randint(12, 480)
        if lang == "en":
            title, thing, unit = _EN_TOPICS[i % len(_EN_TOPICS)]
            office = _OFFICES_EN[(i // len(_EN_TOPICS) + i) % len(_OFFICES_EN)]
            code = f"FM-{code_number}"
            answer = f"{amount} {unit}"
            paragraphs = (
                f"This notice explains the {thing} rules for the {office} office. "
                f"Requests are made with form {code} in the service portal.",
                f"The limit for a {thing} is {answer}. Approval takes two working days, "
                "and the facilities team confirms by e-mail.",
            )
            table = (
                ("Office", "Form", "Limit"),
                (office, code, answer),
                ("Other offices", "FM-100", f"{amount + 15} {unit}"),
            )
            question = f"What is the limit for a {thing} with form {code}?"
        else:
            title, thing, unit = _ZH_TOPICS[i % len(_ZH_TOPICS)]
            office = _OFFICES_ZH[(i // len(_ZH_TOPICS) + i) % len(_OFFICES_ZH)]
            code = f"ZH-{code_number}"
            answer = f"{amount}{unit}"
            paragraphs = (
                f"本通知说明{office}办公室的{thing}规定。请在服务门户中填写表格{code}提交申请。",
                f"{thing}的上限为{answer}。审批需要两个工作日，行政部门会通过邮件确认。",
            )
            table = (
                ("办公室", "表格", "上限"),
                (office, code, answer),
                ("其他办公室", "ZH-100", f"{amount + 15}{unit}"),
            )
            question = f"表格{code}的{thing}上限是多少？"
        pages.append(ScanPage(lang, f"{title} ({code})", paragraphs, table, question, answer))
    return pages


def _font(lang: str, size: int) -> Any:
    from PIL import ImageFont

    if lang == "en":
        return ImageFont.truetype(str(LATIN_FONT), size)
    for path in CJK_FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    raise FileNotFoundError("no CJK font: install fonts-wqy-microhei (make test does)")


def _wrap(text: str, font: Any, width: int, lang: str) -> list[str]:
    pieces = list(text) if lang == "zh" else text.split(" ")
    joiner = "" if lang == "zh" else " "
    lines: list[str] = []
    line = ""
    for piece in pieces:
        candidate = line + joiner + piece if line else piece
        if font.getlength(candidate) > width and line:
            lines.append(line)
            line = piece
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def render(page: ScanPage, dpi: int = 300, seed: int = 0, *, rotate: float | None = None) -> Any:
    """The page as a greyscale scan (a PIL image at ``dpi``): A4, 11 pt text, a ruled table,
    then blur, grain, specks and a rotation under one degree."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    width, height = int(8.27 * dpi), int(11.69 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    pt = dpi / 72
    body, head = _font(page.lang, round(11 * pt)), _font(page.lang, round(16 * pt))
    left, y = round(72 * pt), round(72 * pt)
    text_width = width - 2 * left
    draw.text((left, y), page.title, font=head, fill=0)
    y += round(34 * pt)
    for paragraph in page.paragraphs:
        for line in _wrap(paragraph, body, text_width, page.lang):
            draw.text((left, y), line, font=body, fill=0)
            y += round(17 * pt)
        y += round(12 * pt)
    cell_w, cell_h = text_width // 3, round(24 * pt)
    y += round(6 * pt)
    for r, row in enumerate(page.table):
        for c, cell in enumerate(row):
            x0, y0 = left + c * cell_w, y + r * cell_h
            draw.rectangle((x0, y0, x0 + cell_w, y0 + cell_h), outline=0, width=max(1, dpi // 150))
            draw.text((x0 + round(6 * pt), y0 + round(6 * pt)), cell, font=body, fill=0)
    image = image.filter(ImageFilter.GaussianBlur(0.35 * dpi / 150))
    angle = rotate if rotate is not None else rng.uniform(-0.8, 0.8)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed)
    pixels = pixels + noise.normal(0, 10, pixels.shape)
    pixels[noise.random(pixels.shape) < 0.0004] = 0  # dust specks
    scan = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    scan.info["dpi"] = (dpi, dpi)
    return scan


def save_pdf(images: list[Any], path: Path, dpi: int = 300) -> Path:
    """Image-only PDF pages (no text layer), as a scanner writes them."""
    first, *rest = images
    first.save(path, "PDF", resolution=dpi, save_all=True, append_images=rest)
    return path


def save_image(images: list[Any], path: Path, dpi: int = 300) -> Path:
    """PNG/JPEG/WebP (one page) or TIFF (every page) with its resolution recorded."""
    first, *rest = images
    if path.suffix.lower() in {".tif", ".tiff"}:
        first.save(path, dpi=(dpi, dpi), save_all=True, append_images=rest, compression="tiff_lzw")
    else:
        first.save(path, dpi=(dpi, dpi))
    return path


def cer(truth: str, read: str) -> float:
    """Character error rate: edit distance over the truth's length, whitespace ignored
    (OCR and PDF line breaks move spaces, not characters)."""
    a = "".join(truth.split())
    b = "".join(read.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(len(a), 1)
