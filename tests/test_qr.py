"""`closeloop qr`: printable sheets whose codes decode to the branch's Telegram deep link and web-chat URL."""

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from bot.qr import Code, Label, Sheet, deep_link_payload, render_png
from config.cli import main

SVG = "{http://www.w3.org/2000/svg}"
TELEGRAM = "https://t.me/closeloop_test_bot?start=MAIN-C1"
WEBCHAT = "https://feedback.example.cn/c/MAIN/C1"


@pytest.fixture
def public_url(monkeypatch):
    monkeypatch.setenv("CLOSELOOP_HTTP_PUBLIC_URL", "https://feedback.example.cn")


def decoded(image: Image.Image) -> set[str]:
    return {result.text for result in zxingcpp.read_barcodes(image)}


def svg_codes_as_image(root: ET.Element) -> Image.Image:
    """Paint the SVG's code paths (runs "Mx,yhNv1h-Nz", placed by translate and scale) onto a white page."""
    width, height = (int(v) for v in root.get("viewBox").split()[2:])
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for path in root.iter(f"{SVG}path"):
        left, top, scale = (int(v) for v in re.findall(r"\d+", path.get("transform")))
        for x, y, run in re.findall(r"M(\d+),(\d+)h(\d+)", path.get("d")):
            x0, y0 = left + int(x) * scale, top + int(y) * scale
            draw.rectangle((x0, y0, x0 + int(run) * scale - 1, y0 + scale - 1), fill=0)
    return image


def texts(root: ET.Element) -> list[str]:
    return [element.text for element in root.iter(f"{SVG}text")]


def test_counter_sheet_codes_decode_to_the_deep_link_and_the_web_chat_url(tmp_path, public_url, monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_TELEGRAM_USERNAME", "closeloop_test_bot")
    assert main(["qr", "MAIN", "--counter", "C1", "--out", str(tmp_path / "sheets")]) == 0
    png, svg = tmp_path / "sheets" / "MAIN-C1.png", tmp_path / "sheets" / "MAIN-C1.svg"
    assert f"wrote {png.with_suffix('')}.png" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (1240, 1748)
        assert decoded(image) == {TELEGRAM, WEBCHAT}
    root = ET.fromstring(svg.read_bytes())
    assert decoded(svg_codes_as_image(root)) == {TELEGRAM, WEBCHAT}
    assert {"Main Street Branch", "中央大街支行", "Counter 1 · 1号窗口", "Telegram", "Web chat · 网页版"} <= set(
        texts(root)
    )
    assert {TELEGRAM, WEBCHAT, "Tell us about your visit · 请评价本次服务"} <= set(texts(root))


def test_without_a_telegram_username_the_sheet_holds_the_web_chat_code_only(tmp_path, public_url, monkeypatch, capsys):
    monkeypatch.delenv("CLOSELOOP_TELEGRAM_USERNAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["qr", "EAST"]) == 0
    assert "no Telegram username (CLOSELOOP_TELEGRAM_USERNAME): web-chat code only" in capsys.readouterr().err
    with Image.open(tmp_path / "EAST.png") as image:
        assert decoded(image) == {"https://feedback.example.cn/c/EAST"}
    root = ET.fromstring((tmp_path / "EAST.svg").read_bytes())
    assert len(list(root.iter(f"{SVG}path"))) == 1
    assert "Telegram" not in texts(root)


def test_branch_names_are_escaped_in_the_svg(tmp_path, monkeypatch):
    branches = tmp_path / "branches.toml"
    branches.write_text(
        '[[branches]]\ncode = "AMP"\nname = { en = "Tom & Jerry <Plaza>", zh = "汤姆&杰瑞\\"广场\\"" }\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CLOSELOOP_FILES_BRANCHES", str(branches))
    assert main(["qr", "AMP", "--out", str(tmp_path)]) == 0
    raw = (tmp_path / "AMP.svg").read_text(encoding="utf-8")
    assert "Tom &amp; Jerry &lt;Plaza&gt;" in raw
    assert {"Tom & Jerry <Plaza>", '汤姆&杰瑞"广场"'} <= set(texts(ET.fromstring(raw)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NORTH"], "Error: unknown branch 'NORTH' (known: MAIN, EAST)"),
        (["MAIN", "--counter", "ATM"], "Error: unknown counter 'ATM' in branch MAIN (its counters: C1, C2, VIP)"),
    ],
    ids=["branch", "counter"],
)
def test_unknown_branch_or_counter_exits_2_naming_the_known_ones(args, message, tmp_path, capsys):
    assert main(["qr", *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_out_path_that_is_a_file_exits_2(tmp_path, capsys):
    taken = tmp_path / "sheet.png"
    taken.write_bytes(b"")
    assert main(["qr", "MAIN", "--out", str(taken)]) == 2
    assert f"Invalid value for '--out': Directory '{taken}' is a file." in capsys.readouterr().err
    assert main(["qr", "MAIN", "--out", str(taken / "below")]) == 2
    assert f"Invalid value for '--out': cannot write into {taken / 'below'}" in capsys.readouterr().err


def test_qr_is_listed_in_help(capsys):
    assert main(["--help"]) == 0
    assert re.search(r"^\s+qr\s+Write a printable sheet", capsys.readouterr().out, re.MULTILINE)


def test_without_a_chinese_font_the_png_shows_english_and_still_decodes():
    sheet = Sheet(Label("Main Street Branch", "中央大街支行"), (Code(Label("Web chat", "网页版"), WEBCHAT),))
    with Image.open(io.BytesIO(render_png(sheet, fonts=[Path("/nonexistent/font.ttc")]))) as image:
        assert decoded(image) == {WEBCHAT}


def test_deep_link_payload_must_fit_telegrams_limit():
    assert deep_link_payload("MAIN", "C1") == "MAIN-C1"
    with pytest.raises(ValueError, match="1-64 characters"):
        deep_link_payload("B" * 40, "C" * 24)
