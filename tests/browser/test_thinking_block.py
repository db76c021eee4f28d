"""The playground's "Thinking" block in a real browser: a reasoning model's thought streams
into a collapsed block above the answer, and the answer text holds no thought. The model is
the fake backend with an R1-style template (the thought is open from the first token) and a
fixed reply, one token every 50 ms so the stream is seen growing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import RunningServer, fake_model, run_server

R1_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
THOUGHT = "The user greets me, so I greet them back."
ANSWER = "Hello there, friend."


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    model = fake_model(
        "thinker",
        chat_template=R1_TEMPLATE,
        reply=f" {THOUGHT} </think> {ANSWER}",
        token_delay_s=0.05,
    )
    tmp: Path = tmp_path_factory.mktemp("thinking-page")
    with run_server(tmp, {"models": [model]}) as server:
        yield server


def test_the_thought_streams_into_a_collapsed_thinking_block_above_the_answer(
    thinking_server: RunningServer, open_tab: Any
) -> None:
    tab = open_tab(thinking_server.url)
    page = tab.page
    page.goto(f"{thinking_server.url}/ui/")
    page.locator("#playground").wait_for(state="visible")
    page.select_option("#model", "thinker")
    page.fill("#prompt", "Hi")
    page.click("#send")
    block = page.locator("#conversation .turn.assistant details.thinking").last
    block.wait_for(state="attached")
    page.locator("#reply-stats[data-state=done]").wait_for()
    assert block.is_visible()
    assert block.get_attribute("open") is None  # collapsed
    assert block.locator("summary").inner_text() == "Thinking"
    assert block.locator(".thought").text_content() == THOUGHT
    text = page.locator("#conversation .turn.assistant .text").last.inner_text()
    assert text == ANSWER
    # above the answer
    order = page.evaluate(
        """() => {
          const turn = [...document.querySelectorAll('#conversation .turn.assistant')].pop();
          const kids = [...turn.children];
          return [kids.indexOf(turn.querySelector('details.thinking')),
                  kids.indexOf(turn.querySelector('.text'))];
        }"""
    )
    assert order[0] < order[1]
    block.locator("summary").click()
    assert block.get_attribute("open") is not None
