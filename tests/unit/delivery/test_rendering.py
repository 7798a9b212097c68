"""A reply as platform text: the reply, then its recommendations with their links, within a limit."""

from services.delivery.rendering import render
from tests.unit.delivery.conftest import reply


def test_recommendations_follow_the_text_one_per_line_with_their_link():
    assert render(reply(), 4096) == (
        "The Aurora runner comes in blue, size 42 is in stock.\n\n• Aurora runner: http://127.0.0.1:8108/r/abc\n• Trail socks"
    )


def test_a_reply_without_recommendations_is_its_text():
    assert render(reply(recommendations=[]), 4096) == "The Aurora runner comes in blue, size 42 is in stock."


def test_lines_that_do_not_fit_are_left_out_and_long_text_is_cut():
    text = "The Aurora runner comes in blue, size 42 is in stock."
    assert render(reply(), len(text) + 50) == text + "\n\n• Aurora runner: http://127.0.0.1:8108/r/abc"
    cut = render(reply(text="x" * 3000), 2000)
    assert len(cut) == 2000 and cut.endswith("…")
