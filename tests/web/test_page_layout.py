"""The explainer on a laptop's and a projector's screen, for any model: fit, colour, keyboard.

For the shipped model, CNN Explainer's Tiny VGG (where ``../shared/cnn-explainer`` exists)
and a generated 20-layer model, at 1280×720 and 1440×900: the page never scrolls sideways,
the class scores are on screen, no column title is cut, and a colour input's channels are
drawn in red, green and blue. Then the keyboard path (skip link, one tab stop per layer,
Enter into the detail and Escape back) and axe-core's report (no serious violation; axe
is vendored under ``vendor/axe-core``, MPL-2.0). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import start_server
from PIL import Image

from convlens import nn

SHARED = Path(__file__).resolve().parents[3] / "shared" / "cnn-explainer"
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
SIZES = [(1280, 720), (1440, 900)]


def deep_model() -> nn.Sequential:
    """20 layers, 3×32×32 in, 10 classes out: three conv blocks of 16, 32 and 64 maps."""
    rng = np.random.default_rng(0)
    layers: list[nn.Layer] = []
    channels = 3
    for width in (16, 32, 64):
        for _ in range(2):
            layers += [nn.Conv2D(channels, width, 3, padding=1, rng=rng), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2D(2))
    layers += [
        nn.Flatten(),
        nn.Dense(64 * 4 * 4, 64, rng=rng),
        nn.ReLU(),
        nn.Dense(64, 10, rng=rng),
    ]
    layers.append(nn.Softmax())
    assert len(layers) == 20
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def servers(server, tmp_path_factory):
    """{name: url}: the shipped model, a 20-layer one and (when shared) CNN Explainer's."""
    folder = tmp_path_factory.mktemp("deep")
    classes = ["airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    deep_model().save(folder / "deep.safetensors", input_shape=(3, 32, 32), classes=classes)
    pictures = folder / "img"
    pictures.mkdir()
    rng = np.random.default_rng(1)
    for name in ("ship_1", "frog_2"):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(pictures / f"{name}.png")
    started = [start_server("--model", str(folder / "deep.safetensors"))]
    urls = {"shipped": server, "deep": started[0][1]}
    if (SHARED / "model.json").exists():
        started.append(start_server("--model", str(SHARED / "model.json")))
        urls["vgg"] = started[-1][1]
    yield urls
    for process, _ in started:
        process.terminate()
        process.wait(timeout=10)


def open_page(browser, url: str, size: tuple[int, int]):
    """A page at `size`, loaded; its console errors collected in `page.problems`."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    page.problems = problems
    return page


#: Everything the layout checks read, in one pass.
MEASURE = """async () => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const overview = document.getElementById('overview');
  window.scrollTo(0, overview.offsetTop - 56);  // just below the sticky header
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  };
  const cut = (e) => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
  const scoreNames = [...document.querySelectorAll('.score:not([hidden]) .score-name')];
  const headers = [...document.querySelectorAll('.ov-column > header')];
  return {
    page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    viewport: [innerWidth, innerHeight],
    scores: box(document.querySelector('.ov-kind-scores .ov-scores')),
    names: scoreNames.filter(cut).map((e) => e.textContent),
    titles: headers.filter((h) => cut(h) || [...h.children].some(cut)).map((h) => h.textContent),
    headers: headers.map(box),
    overflowing: document.querySelector('.ov-scroll').classList.contains('overflowing'),
    brokenLabels: [...document.querySelectorAll('.sample-label')].filter((label) => {
      const text = label.firstChild;  // a word split over two lines has two rectangles
      const range = document.createRange();
      let at = 0;
      return text.textContent.split(' ').some((word) => {
        range.setStart(text, at);
        range.setEnd(text, at + word.length);
        at += word.length + 1;
        return range.getClientRects().length > 1;
      });
    }).map((label) => label.textContent),
  };
}"""

#: [r, g, b] of the middle pixel of each input map, with its accessible name.
INPUT_PIXELS = """() => [...document.querySelectorAll("canvas[data-layer='input']")].map((c) => {
  const [r, g, b] = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
  return {name: c.getAttribute('aria-label'), rgb: [r, g, b]};
})"""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ["shipped", "vgg", "deep"])
def test_the_whole_network_fits_the_screen(browser, servers, shot, name, size):
    if name not in servers:
        pytest.skip(f"CNN Explainer's model is not at {SHARED}")
    page = open_page(browser, servers[name], size)
    try:
        m = page.evaluate(MEASURE)
        assert m["page"][0] <= m["page"][1], "the page scrolls sideways"
        left, top, right, bottom = m["scores"]
        width, height = m["viewport"]
        assert 0 <= left and right <= width and 50 <= top and bottom <= height, m["scores"]
        assert not m["names"], f"class names cut: {m['names']}"
        assert not m["titles"], f"column titles cut: {m['titles']}"
        assert not m["brokenLabels"], f"sample labels broken inside a word: {m['brokenLabels']}"
        for a, b in zip(m["headers"], m["headers"][1:], strict=False):
            assert a[2] <= b[0] + 0.5, f"titles overlap: {a} {b}"
        if name != "deep":  # CNN Explainer's and ours fit without scrolling; 20 layers may not
            assert not m["overflowing"]

        pixels = page.evaluate(INPUT_PIXELS)
        if name == "shipped":
            [grey] = pixels
            assert "grey channel" in grey["name"] and len(set(grey["rgb"])) == 1, grey
        else:
            red, green, blue = pixels
            assert "red channel" in red["name"] and red["rgb"][1:] == [0, 0], red
            assert "green channel" in green["name"] and green["rgb"][0::2] == [0, 0], green
            r, g, b = blue["rgb"]
            assert "blue channel" in blue["name"] and b >= g >= r, blue
        shot(page, f"layout-{name}-{size[0]}x{size[1]}")
        assert not page.problems, page.problems
    finally:
        page.context.close()


def test_a_narrow_screen_scrolls_the_layers_under_the_scores(browser, servers, shot):
    page = open_page(browser, servers["deep"], (800, 900))
    try:
        m = page.evaluate(MEASURE)
        assert m["page"][0] <= m["page"][1] and m["overflowing"]
        assert m["scores"][2] <= 800  # the scores stay in view
        assert page.locator(".ov-hint").is_visible()
        more = page.locator(".ov-more:visible").first
        hidden = page.locator("#overview canvas.map[hidden]").count()
        more.click()  # "+N more" shows a layer's other maps
        assert page.locator("#overview canvas.map[hidden]").count() < hidden
        shot(page, "layout-deep-800x900")
    finally:
        page.context.close()


def test_keyboard_path_through_the_overview(browser, server, shot):
    page = open_page(browser, server, (1280, 720))
    try:
        focused = """() => {
            const a = document.activeElement;
            return [a.id, a.dataset.layer, a.dataset.channel];
        }"""
        page.keyboard.press("Tab")
        assert page.evaluate(focused)[0] == "skip-link"
        page.keyboard.press("Enter")
        assert page.evaluate(focused)[1:] == ["0", "0"]  # the first layer's first map

        stops = page.evaluate(
            "() => document.querySelectorAll('#overview .ov-wrap [tabindex=\"0\"]').length"
        )
        columns = page.locator(".layer-column, .scores-column").count()
        assert stops == columns  # one tab stop per layer
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert page.evaluate(focused)[1:] == ["0", "2"]
        page.keyboard.press("ArrowRight")
        assert page.evaluate(focused)[1] == "1"
        page.keyboard.press("Tab")  # the next layer, not the next map
        assert page.evaluate(focused)[1] == "2"
        page.keyboard.press("Shift+Tab")
        layer, channel = page.evaluate(focused)[1:]

        page.keyboard.press("Enter")  # opens the detail, and focus goes there
        page.wait_for_selector("#detail:not([hidden]) .elementwise-view")
        assert page.evaluate(focused)[0] == "detail-title"
        shot(page, "layout-keyboard-detail")
        page.keyboard.press("Tab")
        assert page.evaluate(
            "() => document.getElementById('detail').contains(document.activeElement)"
        )
        page.keyboard.press("Escape")  # closes it, and focus returns to the map
        page.wait_for_selector("#detail", state="hidden")
        assert page.evaluate(focused)[1:] == [layer, channel]
        assert not page.problems, page.problems
    finally:
        page.context.close()


def axe_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => `${v.id}: ${v.help}: ${v.nodes.slice(0, 3).map((n) => n.target)}`)"""
    )
    return found


def test_axe_finds_no_serious_violation(browser, servers):
    name = "vgg" if "vgg" in servers else "shipped"
    page = open_page(browser, servers[name], (1280, 720))
    try:
        assert axe_violations(page) == []
        # with a convolution's detail open and a gradient explained
        page.click("#overview canvas.map[data-layer='0'][data-channel='1']")
        page.wait_for_selector("#detail:not([hidden]) #conv-value")
        page.locator("#backward").scroll_into_view_if_needed()
        page.locator("canvas[data-grad-layer='input'][data-channel='0']").click()
        page.wait_for_selector("#grad-detail")
        page.click(".score[data-class='1']")  # and the softmax's detail
        page.wait_for_selector("#detail:not([hidden]) #softmax-value")
        assert axe_violations(page) == []
    finally:
        page.context.close()
