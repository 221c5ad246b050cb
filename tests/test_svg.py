"""The web page's inline SVG charts: bars in proportion to the figures, an empty state, escaped and bounded labels."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from receiver.http.svg import LABEL_LIMIT, Bar, Series, hbars, label, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # noqa: S314 - our own output, parsed to check it is well-formed


def bars_of(root: ET.Element, kind: str) -> list[ET.Element]:
    classes = (f"s-{kind}", f"p-{kind}")
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") in classes and r.find(f"{SVG}title") is not None]


class TestStackedBars:
    def test_heights_are_in_proportion_to_the_values(self) -> None:
        """A slot with twice the events has a bar twice as tall; the stack's parts add up."""
        chart = stacked_bars(
            ["00:00", "01:00", "02:00"],
            [Series("failed", "failed", [2, 4, 0]), Series("notified", "notified", [1, 2, 0])],
            title="Events",
            desc="per hour",
        )
        root = parse(chart)
        failed = [float(r.get("height", "0")) for r in bars_of(root, "failed")]
        notified = [float(r.get("height", "0")) for r in bars_of(root, "notified")]
        assert 2 == len(failed)  # the empty slot draws nothing
        assert failed[1] == pytest.approx(2 * failed[0], rel=0.02)
        assert notified[1] == pytest.approx(2 * notified[0], rel=0.02)
        assert failed[0] == pytest.approx(2 * notified[0], rel=0.02)

    def test_each_bar_tells_its_figure_in_words(self) -> None:
        """Every bar has a <title> with its slot, value and series: readable without colour."""
        root = parse(stacked_bars(["08:00"], [Series("suppressed", "suppressed", [7])], title="t", desc="d"))
        (bar,) = bars_of(root, "suppressed")
        assert "08:00: 7 suppressed" == bar.findtext(f"{SVG}title")
        assert bar.get("fill", "").startswith("url(#")  # dotted, not only coloured

    def test_the_chart_is_a_named_image(self) -> None:
        """role=img, labelled by its own <title> and <desc>."""
        root = parse(stacked_bars(["a"], [Series("x", "other", [1])], title="Events per hour", desc="what it shows"))
        assert "img" == root.get("role")
        title_id, desc_id = root.get("aria-labelledby", "").split()
        assert "Events per hour" == root.findtext(f"{SVG}title")
        assert {title_id, desc_id} == {e.get("id") for e in root if e.tag in (f"{SVG}title", f"{SVG}desc")}

    def test_no_events_draws_a_note_and_no_bars(self) -> None:
        """All zero: the chart says so instead of drawing an empty axis."""
        root = parse(
            stacked_bars(["a", "b"], [Series("x", "other", [0, 0])], title="t", desc="d", empty="No events here.")
        )
        assert [] == list(root.iter(f"{SVG}rect"))
        assert "No events here." in "".join(root.itertext())

    def test_no_inline_style(self) -> None:
        """The page's CSP forbids inline style: colours come from classes."""
        chart = str(stacked_bars(["a"], [Series("failed", "failed", [3])], title="t", desc="d"))
        assert "style=" not in chart
        assert "<script" not in chart


class TestHorizontalBars:
    def test_lengths_are_in_proportion_and_the_longest_fills_the_width(self) -> None:
        """Widths follow the values."""
        root = parse(hbars([Bar("A", 10), Bar("B", 5), Bar("C", 1)], title="t", desc="d"))
        widths = [float(r.get("width", "0")) for r in bars_of(root, "bar")]
        assert widths[1] == pytest.approx(widths[0] / 2, rel=0.02)
        assert widths[2] == pytest.approx(widths[0] / 10, rel=0.05)

    def test_untrusted_labels_are_escaped(self) -> None:
        """A process name with markup stays text: no element, no attribute, no script."""
        evil = '<script>alert(1)</script>" onload="x'
        chart = str(hbars([Bar(evil, 3)], title="<b>t</b>", desc="d & e"))
        assert "<script" not in chart
        assert 'onload="' not in chart
        root = parse(chart)
        texts = "".join(root.itertext())
        assert "<script>" in texts  # shown as the text it is
        assert "<b>t</b>" == root.findtext(f"{SVG}title")

    def test_long_labels_are_cut(self) -> None:
        """A 5000-character robot name is drawn as a short label ending in an ellipsis."""
        root = parse(hbars([Bar("R" * 5000, 1)], title="t", desc="d"))
        drawn = [t.text or "" for t in root.iter(f"{SVG}text")]
        assert any(t.endswith("\u2026") for t in drawn)
        assert max(len(t) for t in drawn) < 40

    def test_empty_list_says_so(self) -> None:
        """No bars: the chosen note."""
        assert "No faults." in "".join(parse(hbars([], title="t", desc="d", empty="No faults.")).itertext())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Invoice", "Invoice", id="short"),
        pytest.param("a\nb\x00c\u202ed", "a b c d", id="control-and-bidi-characters"),
        pytest.param("x" * 100, "x" * (LABEL_LIMIT - 1) + "\u2026", id="cut"),
    ],
)
def test_label(text: str, expected: str) -> None:
    """One line, no control or direction-override characters, bounded."""
    assert expected == label(text)


def test_ids_are_unique_per_chart() -> None:
    """Two charts on one page do not share pattern or title ids."""
    first = str(stacked_bars(["a"], [Series("f", "failed", [1])], title="t", desc="d"))
    second = str(stacked_bars(["a"], [Series("f", "failed", [1])], title="t", desc="d"))
    ids = re.findall(r'id="([^"]+)"', first)
    assert ids
    assert not set(ids) & set(re.findall(r'id="([^"]+)"', second))
