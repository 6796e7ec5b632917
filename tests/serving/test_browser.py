"""The explorer and the demo page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium. Skipped, saying why, only where no browser can be installed;
.ci/run installs one.

``ATTNAPPS_SCREENSHOT=FILE`` saves the demo page after the upload (the README's picture);
``ATTNAPPS_DEMO_RUN=DIR`` serves that captioning run instead of the tiny one."""

import os

import pytest

from tests.browser.driver import chromium, missing
from tests.serving.conftest import served

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=f"no browser: {missing()}")]


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def weights(card, selector=".tok.k"):
    from selenium.webdriver.common.by import By

    return [e.get_attribute("data-w") for e in card.find_elements(By.CSS_SELECTOR, selector)]


def hover(browser, element):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(element).perform()


def test_translation_report_hover_moves_the_highlight_over_the_source(browser, tiny_runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run_dir, _ = tiny_runs["translation"]
    browser.get((run_dir / "report.html").as_uri())
    card = browser.find_elements(By.CSS_SELECTOR, ".example")[0]
    targets = card.find_elements(By.CSS_SELECTOR, ".tok.q")
    assert len(targets) >= 3
    hover(browser, targets[0])
    first = weights(card)
    hover(browser, targets[2])
    third = weights(card)
    assert first != third and len(first) == len(card.find_elements(By.CSS_SELECTOR, '.seq[data-seq="source"] .tok'))
    assert "active" in targets[2].get_attribute("class") and "active" not in targets[0].get_attribute("class")
    # what is shaded is the page's data: target 3's row of the first view, averaged over the heads
    heads = browser.execute_script(
        "return JSON.parse(document.getElementById('data').textContent).examples[0].views[0].heads")
    row = [sum(h[2][j] for h in heads) / len(heads) / 1000 for j in range(len(third))]
    assert [float(x) for x in third] == pytest.approx(row, abs=1e-4)
    heads = Select(card.find_element(By.CSS_SELECTOR, "select.head"))
    assert [o.text for o in heads.options] == ["average of heads", "head 1", "head 2"]
    views = Select(card.find_element(By.CSS_SELECTOR, "select.view"))
    views.select_by_visible_text("encoder · layer 1 · attn")  # self-attention: one row, queries and keys
    card = browser.find_elements(By.CSS_SELECTOR, ".example")[0]
    both = card.find_elements(By.CSS_SELECTOR, ".tok.q.k")
    hover(browser, both[0])
    a = weights(card)
    hover(browser, both[-1])
    assert weights(card) != a
    # the learning curves and the metrics table are there
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart") and "test.bleu" in browser.page_source


def test_classification_report_filters_and_probabilities(browser, tiny_runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((tiny_runs["classification"][0] / "report.html").as_uri())
    cards = browser.find_elements(By.CSS_SELECTOR, ".example")
    shown = lambda: [c for c in cards if c.is_displayed()]  # noqa: E731
    assert len(shown()) == 16 and all("right" in c.get_attribute("class") for c in cards)  # it learnt the task
    Select(browser.find_element(By.CSS_SELECTOR, "select.verdict")).select_by_value("wrong")
    assert shown() == []
    Select(browser.find_element(By.CSS_SELECTOR, "select.verdict")).select_by_value("all")
    Select(browser.find_element(By.CSS_SELECTOR, "select.klass")).select_by_value("pos")
    assert 0 < len(shown()) < 16 and all(c.get_attribute("data-gold") == "pos" for c in shown())
    assert shown()[0].find_elements(By.CSS_SELECTOR, ".probs .bar")
    # the tokens are shaded by the weights the classifier pooled with (the page's data), under its decision
    card = shown()[0]
    index = int(card.get_attribute("data-index"))
    ex = browser.execute_script(
        "return JSON.parse(document.getElementById('data').textContent).examples[arguments[0]]", index)
    assert [float(x) for x in weights(card)] == pytest.approx([x / 1000 for x in ex["views"][0]["heads"][0][0]], abs=1e-4)
    assert card.find_element(By.CSS_SELECTOR, ".tok.q").text == ex["label"]["pred"] == "pos"


def test_captioning_report_click_a_word_redraws_the_map(browser, tiny_runs):
    from selenium.webdriver.common.by import By

    browser.get((tiny_runs["captioning"][0] / "report.html").as_uri())
    card = browser.find_elements(By.CSS_SELECTOR, ".example")[0]
    words = card.find_elements(By.CSS_SELECTOR, ".tok.q")
    assert len(words) >= 2 and len(card.find_elements(By.CSS_SELECTOR, "td.cell")) == 64
    words[0].click()
    first = weights(card, "td.cell")
    picture = browser.execute_script("return arguments[0].toDataURL()", card.find_element(By.CSS_SELECTOR, "canvas"))
    words[-1].click()
    assert weights(card, "td.cell") != first
    assert browser.execute_script("return arguments[0].toDataURL()",
                                  card.find_element(By.CSS_SELECTOR, "canvas")) != picture
    assert card.find_elements(By.CSS_SELECTOR, "ul.refs li")


def test_generation_report_hover_shades_the_context(browser, tiny_runs):
    from selenium.webdriver.common.by import By

    browser.get((tiny_runs["generation"][0] / "report.html").as_uri())
    card = browser.find_elements(By.CSS_SELECTOR, ".example")[0]
    toks = card.find_elements(By.CSS_SELECTOR, ".tok.q")
    hover(browser, toks[5])
    w = [float(x) for x in weights(card)]
    assert sum(w[6:]) == 0 and sum(w[:6]) == pytest.approx(1, abs=0.01)  # causal: only the context so far


@pytest.fixture(scope="module")
def server(tiny_runs):
    cap = os.environ.get("ATTNAPPS_DEMO_RUN") or str(tiny_runs["captioning"][0])
    with served(f"run={cap}", f"run={tiny_runs['translation'][0]}") as base:
        yield base


def test_served_page_uploads_an_image_and_shows_the_caption_with_its_attention(browser, server, tiny_runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server)
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "select.run option"))
    Select(browser.find_element(By.CSS_SELECTOR, "select.run")).select_by_index(0)  # the captioning run
    image = next((tiny_runs["captioning"][0].parent / "data" / "images").iterdir())
    if os.environ.get("ATTNAPPS_DEMO_IMAGE"):
        image = os.environ["ATTNAPPS_DEMO_IMAGE"]
    browser.find_element(By.CSS_SELECTOR, "input.image").send_keys(str(image))
    browser.find_element(By.CSS_SELECTOR, "button.go").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".examples .output-text"))
    caption = browser.find_element(By.CSS_SELECTOR, ".examples .output-text").text
    assert caption.strip() and browser.find_element(By.CSS_SELECTOR, ".error").text == ""
    card = browser.find_element(By.CSS_SELECTOR, ".examples .example")
    words = card.find_elements(By.CSS_SELECTOR, ".tok.q")
    assert [w.text for w in words] == caption.split()
    words[min(1, len(words) - 1)].click()
    assert len(weights(card, "td.cell")) == 64
    if os.environ.get("ATTNAPPS_SCREENSHOT"):
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(os.environ["ATTNAPPS_SCREENSHOT"])


def test_served_page_empty_form_shows_the_error(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server)
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "select.run option"))
    Select(browser.find_element(By.CSS_SELECTOR, "select.run")).select_by_index(1)  # translation: a text box
    browser.find_element(By.CSS_SELECTOR, "button.go").click()  # nothing typed
    WebDriverWait(browser, 20).until(lambda b: b.find_element(By.CSS_SELECTOR, ".error").text)
    assert browser.find_element(By.CSS_SELECTOR, ".error").text == "text: empty text"
    Select(browser.find_element(By.CSS_SELECTOR, "select.run")).select_by_index(0)  # captioning, no file chosen
    browser.find_element(By.CSS_SELECTOR, "button.go").click()
    assert browser.find_element(By.CSS_SELECTOR, ".error").text == "choose an image file first"
    # typed text is translated, with its attention
    Select(browser.find_element(By.CSS_SELECTOR, "select.run")).select_by_index(1)
    browser.find_element(By.CSS_SELECTOR, "textarea.text").send_keys("a b c d")
    browser.find_element(By.CSS_SELECTOR, "button.go").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".examples .output-text"))
    assert browser.find_element(By.CSS_SELECTOR, ".examples .output-text").text == "d c b a"
