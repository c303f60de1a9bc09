"""What the browser tests read off the demo page's chat."""

from __future__ import annotations

from typing import Any


async def chat_texts(page: Any) -> list[str]:
    """The text of every chat message shown in ``page`` (notes left out), in order."""
    texts: list[str] = await page.eval_on_selector_all(
        "#messages li:not(.note) .text", "items => items.map(item => item.textContent)"
    )
    return texts
