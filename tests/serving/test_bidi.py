"""Right-to-left and mixed text in a real browser: the explorer's token rows run right to left for Arabic
and Hebrew, left to right for English and Chinese, and the attention shading still lands on the token it
belongs to (headless Chromium, as tests/serving/test_browser.py). The classification report's static
``attention_tokens.html`` paragraphs take their direction from their text in the same way."""

import pytest
import torch

from attnapps.explorer import example, view, write_report_html
from attnapps.plots import shade_tokens_html
from tests.browser.driver import chromium, missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=f"no browser: {missing()}")]

SOURCE = ["the", "cat", "sleeps", "on", "the", "mat"]
ARABIC = ["القطة", "تنام", "على", "Linux", "الحصيرة", "."]  # an English word inside Arabic text
HEBREW = ["החתול", "ישן", "על", "השטיח"]
CHINESE = ["猫", "在", "垫", "子", "上", "睡"]


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def weights_for(q: int, k: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(2, q, k, generator=g) * 3, -1)  # (heads, q, k)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = tmp_path_factory.mktemp("bidi")
    examples = [
        example({"source": SOURCE, "target": ARABIC}, [view("cross", "target", "source", weights_for(6, 6, 0))]),
        example({"source": ARABIC, "target": SOURCE}, [view("cross", "target", "source", weights_for(6, 6, 1))]),
        example({"text": HEBREW, "label": ["חיובי"]}, [view("pool", "label", "text", weights_for(1, 4, 2))],
                label={"gold": "חיובי", "pred": "חיובי", "probs": {"חיובי": 0.9, "שלילי": 0.1}}),
        example({"source": SOURCE, "target": CHINESE}, [view("cross", "target", "source", weights_for(6, 6, 3))]),
    ]
    path, _ = write_report_html(run, "bidi", {}, {}, examples, 4)
    return path, examples


def boxes(card, seq):
    from selenium.webdriver.common.by import By

    row = card.find_element(By.CSS_SELECTOR, f'.seq[data-seq="{seq}"] .toks')
    toks = row.find_elements(By.CSS_SELECTOR, ".tok")
    return row, toks, [t.rect["x"] for t in toks]


def direction(browser, element):
    return browser.execute_script("return getComputedStyle(arguments[0]).direction", element)


def test_rows_run_in_their_script_direction(browser, page):
    from selenium.webdriver.common.by import By

    path, _ = page
    browser.get(path.as_uri())
    cards = browser.find_elements(By.CSS_SELECTOR, ".example")
    for card, seq, rtl in [(cards[0], "target", True), (cards[0], "source", False), (cards[1], "source", True),
                           (cards[2], "text", True), (cards[3], "target", False)]:
        row, toks, xs = boxes(card, seq)
        assert direction(browser, row) == ("rtl" if rtl else "ltr"), seq
        # logical order is kept (data-i 0, 1, ...); on screen the first token is rightmost in RTL rows
        assert [t.get_attribute("data-i") for t in toks] == [str(i) for i in range(len(toks))]
        assert xs == (sorted(xs, reverse=True) if rtl else sorted(xs)), (seq, xs)
    # the English word inside the Arabic row keeps its letters left to right, the Arabic words right to left
    _, toks, _ = boxes(cards[0], "target")
    assert toks[3].text == "Linux" and first_and_last_letter_x(browser, toks[3]) == "ltr"
    assert first_and_last_letter_x(browser, toks[0]) == "rtl"


def first_and_last_letter_x(browser, element) -> str:
    """``ltr`` when the token's first letter is drawn left of its last one, else ``rtl``."""
    return browser.execute_script("""
        const text = arguments[0].firstChild, r = document.createRange(), n = text.length;
        r.setStart(text, 0); r.setEnd(text, 1); const first = r.getBoundingClientRect().x;
        r.setStart(text, n - 1); r.setEnd(text, n); const last = r.getBoundingClientRect().x;
        return first < last ? "ltr" : "rtl";""", element)


def test_hovering_an_arabic_token_shades_its_own_row_of_weights(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, examples = page
    browser.get(path.as_uri())
    for index, (q_seq, k_seq) in [(0, ("target", "source")), (1, ("target", "source"))]:
        card = browser.find_elements(By.CSS_SELECTOR, ".example")[index]
        heads = examples[index]["views"][0]["heads"]
        _, queries, _ = boxes(card, q_seq)
        for i in (0, 3, 5):
            ActionChains(browser).move_to_element(queries[i]).perform()
            _, keys, _ = boxes(card, k_seq)
            row = [sum(h[i][j] for h in heads) / len(heads) / 1000 for j in range(len(keys))]
            shown = [float(k.get_attribute("data-w")) for k in keys]
            assert shown == pytest.approx(row, abs=1e-4)
            assert "active" in queries[i].get_attribute("class")
            # the most shaded key on screen is the one with the largest weight in the data
            top = max(range(len(row)), key=row.__getitem__)
            assert keys[top].text == examples[index]["seqs"][k_seq][top]


def test_attention_tokens_html_paragraph_direction(browser, tmp_path):
    from selenium.webdriver.common.by import By

    html = ("<html><meta charset='utf-8'><body>" + shade_tokens_html(ARABIC, [0.1, 0.9, 0.2, 0.3, 0.4, 0.1], "correct")
            + shade_tokens_html(SOURCE, [1, 0, 0, 0, 0, 0], "wrong") + "</body></html>")
    (tmp_path / "t.html").write_text(html, encoding="utf-8")
    browser.get((tmp_path / "t.html").as_uri())
    arabic, english = browser.find_elements(By.CSS_SELECTOR, "p")
    assert direction(browser, arabic) == "rtl" and direction(browser, english) == "ltr"
    spans = arabic.find_elements(By.CSS_SELECTOR, "span")
    xs = [s.rect["x"] for s in spans]
    assert xs[0] > xs[1] > xs[2] and spans[1].get_attribute("title") == "1.000"  # "تنام" carries the top weight
