"""The web page in a real browser (Debian's chromium, driven by selenium through Debian's
chromedriver): upload a clip, see the expected first result with a playable <audio>,
every occurrence of a clip, the duplicates panel, the map with a path, then the "no
match" state for a clip that is not in the collection; a server with a token
that has spaces, ``%``, ``;``, ``=``, quotes, non-ASCII letters or emoji, typed into the
page, plays and draws as well; no request of the page's gets a 4xx (the favicon included).

Set SONICSEARCH_SCREENSHOT=FILE.png to save the page with its results, and
SONICSEARCH_SCREENSHOT_DIR=DIR to save the page of each token test, "more like this", the
map and the duplicates there (docs/serve*.png are real music, from
benchmarks/page_screenshots.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, sound, write_sound
from serve_fixtures import TOKENS, ThreadServer, serve_app

from sonicsearch.index import build_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver)")
NAMES = {"field": ["dawn-chorus", "creek", "rain-on-tin", "night-frogs"],
         "synth": ["warm-pad", "glass-bells", "sub-drone", "arp-loop"],
         "voice": ["choir-a", "humming", "whisper"]}


class Requests:
    """ASGI wrapper that records ``(method, path, status)`` of every answer."""

    def __init__(self, app):
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send):
        async def record(message):
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)
        await self.app(scope, receive, send if scope["type"] != "http" else record)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    files, seed = {}, 0
    for folder, names in NAMES.items():
        for name in names:
            files[name] = write_sound(root / "collection" / folder / f"{name}.wav", seed, 8.0)
            seed += 1
    copy = root / "collection" / "copies" / "night-frogs-quiet.wav"
    copy.parent.mkdir(parents=True)
    sf.write(str(copy), 0.5 * sf.read(str(files["night-frogs"]))[0], SR)  # one duplicate
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "collection"], emb, root / "idx")
    clip = root / "clip.wav"
    sf.write(str(clip), sound(5, 8.0)[int(2.0 * SR) : int(6.0 * SR)], SR)  # glass-bells
    stranger = root / "unknown.wav"
    sf.write(str(stranger), sound(777, 4.0), SR)
    return root, clip, stranger


@pytest.fixture(scope="module")
def site(collection):
    root, clip, stranger = collection
    app = Requests(serve_app(root / "idx", root / "model.pt"))
    with ThreadServer(app) as srv:
        yield srv.url, clip, stranger, app.seen


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1250", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def upload(browser, url: str, clip: Path, reload: bool = True) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if reload:
        browser.get(url + "/")
        wait_for_info(browser)
    browser.execute_script("document.querySelector('#status').textContent = ''")
    browser.find_element(By.ID, "file").send_keys(str(clip))
    WebDriverWait(browser, 30).until(
        lambda d: " in " in d.find_element(By.ID, "status").text  # N results in T ms
        or d.find_elements(By.CSS_SELECTOR, ".nomatch")
        or "error" in d.find_element(By.ID, "status").get_attribute("class"))


def wait_for_info(browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(
        lambda d: "files" in d.find_element(By.ID, "index-info").text,
        message="no index facts on the page")


def assert_first_result_plays_and_draws(browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cards = browser.find_elements(By.CSS_SELECTOR, "article.result")
    assert cards, browser.find_element(By.ID, "status").text
    assert cards[0].find_element(By.CSS_SELECTOR, ".file").text == "glass-bells.wav"
    audio = cards[0].find_element(By.TAG_NAME, "audio")
    assert "#t=" in audio.get_attribute("src")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return arguments[0].readyState", audio) >= 1)
    start = float(cards[0].find_element(By.TAG_NAME, "audio").get_attribute("src")
                  .split("#t=")[1].split(",")[0])
    assert browser.execute_script("return arguments[0].duration", audio) == pytest.approx(8.0)
    WebDriverWait(browser, 10).until(  # the player starts at the matched span
        lambda d: abs(d.execute_script("return arguments[0].currentTime", audio) - start) < 0.3)
    # every match's spectrogram was drawn (canvas pixels set)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('canvas.spec')].every(c => c.width > 0 && "
        "c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[3] > 0)"))


def test_upload_shows_the_source_first_with_a_playable_player(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    url, clip, _, seen = site
    seen.clear()
    upload(browser, url, clip)
    assert_first_result_plays_and_draws(browser)
    refused = [s for s in seen if s[2] >= 400]
    assert not refused, refused  # the favicon too
    assert ("GET", "/favicon.ico", 200) in seen
    shot = os.environ.get("SONICSEARCH_SCREENSHOT")
    if shot:  # the ranked list, threshold off, filters shown
        browser.execute_script("document.querySelector('#filters').open = true;"
                               "document.querySelector('[name=k]').value = 4;"
                               "document.querySelector('#min-mode').value = 'off';")
        upload(browser, url, clip, reload=False)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)"))
        browser.save_screenshot(shot)


def test_sounds_similar_switch_and_more_like_this(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, clip, _, seen = site
    seen.clear()
    upload(browser, url, clip)
    assert browser.find_element(By.CSS_SELECTOR, ".chip.mode").text == "same recording"
    browser.execute_script("document.querySelector('#status').textContent = ''")
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=style]").click()
    WebDriverWait(browser, 30).until(  # the switch asks the last clip again (read in one
        lambda d: d.execute_script(  # script: the page replaces these nodes as it answers)
            "const m = document.querySelector('.chip.mode');"
            "return m && m.textContent === 'sounds similar' &&"
            " document.querySelector('#status').textContent.includes('result')"))
    assert any(m == "POST" and "/query" in p for m, p, _ in seen)
    cards = browser.find_elements(By.CSS_SELECTOR, "article.result")
    assert cards[0].find_element(By.CSS_SELECTOR, ".file").text == "glass-bells.wav"
    browser.execute_script("document.querySelector('#status').textContent = ''")
    cards[0].find_element(By.CSS_SELECTOR, "button.more").click()
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return document.querySelector('#status').textContent"
        ".includes('more like an indexed file')"))
    head = browser.find_element(By.CSS_SELECTOR, "#query .name").text
    assert head.endswith("glass-bells.wav")
    names = [c.find_element(By.CSS_SELECTOR, ".file").text
             for c in browser.find_elements(By.CSS_SELECTOR, "article.result")]
    assert names and "glass-bells.wav" not in names  # more like it: the others
    assert any(p.endswith("/similar") and st == 200 for _, p, st in seen), seen
    assert not [x for x in seen if x[2] >= 400], seen
    shots = os.environ.get("SONICSEARCH_SCREENSHOT_DIR")
    if shots:
        browser.save_screenshot(str(Path(shots) / "more-like-this.png"))


def test_a_clip_not_in_the_collection_shows_no_match(site, browser):
    from selenium.webdriver.common.by import By

    url, _, stranger, _ = site
    upload(browser, url, stranger)
    box = browser.find_elements(By.CSS_SELECTOR, ".nomatch")
    assert box and "No match" in box[0].text and "confidence" in box[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, "article.result")


@pytest.mark.parametrize("n", range(len(TOKENS)))
def test_a_token_with_any_printable_characters_plays(collection, browser, n):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, clip, _ = collection
    token = TOKENS[n]
    app = Requests(serve_app(root / "idx", root / "model.pt", token=token))
    with ThreadServer(app) as srv:
        browser.delete_all_cookies()
        browser.get(srv.url + "/")
        box = browser.find_element(By.ID, "token")
        WebDriverWait(browser, 20).until(lambda d: box.is_displayed())
        # typed as a user would paste it (chromedriver cannot type emoji)
        browser.execute_script("arguments[0].value = arguments[1]", box, token)
        browser.find_element(By.ID, "token-save").click()
        wait_for_info(browser)
        upload(browser, srv.url, clip, reload=False)
        assert_first_result_plays_and_draws(browser)
        audio = [s for s in app.seen if s[1].endswith("/audio")]
        assert audio and all(status in (200, 206) for _, _, status in audio), app.seen
        shots = os.environ.get("SONICSEARCH_SCREENSHOT_DIR")
        if shots:
            browser.save_screenshot(str(Path(shots) / f"token-{n}.png"))


def click_point(browser, name: str) -> None:
    """Click the map's point of the file ``name`` where it is drawn."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "map")
    x, y, w, h = browser.execute_script(
        "const i = mapState.data.points.findIndex(p => p.path.endsWith('/' + arguments[0]));"
        "const c = document.querySelector('#map'), d = devicePixelRatio || 1;"
        "return [mapState.xy[i][0] / d, mapState.xy[i][1] / d, c.clientWidth, c.clientHeight]",
        name)
    ActionChains(browser).move_to_element_with_offset(canvas, int(x - w / 2),
                                                      int(y - h / 2)).click().perform()


def test_the_map_plays_a_point_and_draws_a_path_between_two(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _, seen = site
    seen.clear()
    browser.get(url + "/")
    wait_for_info(browser)
    browser.find_element(By.CSS_SELECTOR, "#map-box summary").click()
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return mapState.data && mapState.xy.length === 12"))
    browser.find_element(By.CSS_SELECTOR, "#map-colour option[value=folder]").click()
    legend = browser.find_element(By.ID, "map-legend").text
    assert all(f"{folder} ({len(names)})" in legend for folder, names in NAMES.items()), legend
    click_point(browser, "glass-bells.wav")
    assert browser.find_element(By.ID, "pick-name").text == "glass-bells.wav"
    audio = browser.find_element(By.ID, "pick-audio")
    WebDriverWait(browser, 20).until(  # it plays: metadata read, the clock moving
        lambda d: d.execute_script("return arguments[0].currentTime > 0", audio))
    browser.find_element(By.ID, "pick-start").click()
    click_point(browser, "night-frogs.wav")
    browser.find_element(By.ID, "path-n").clear()
    browser.find_element(By.ID, "path-n").send_keys("5")
    browser.find_element(By.ID, "pick-end").click()
    WebDriverWait(browser, 30).until(lambda d: "similarity path" in d.find_element(
        By.ID, "status").text)
    names = [c.find_element(By.CSS_SELECTOR, ".file").text
             for c in browser.find_elements(By.CSS_SELECTOR, "article.result")]
    assert len(names) == 5 and names[0] == "glass-bells.wav" and names[-1] == "night-frogs.wav"
    assert browser.find_element(By.CSS_SELECTOR, ".chip.mode").text == "similarity path"
    assert any(p == "/map" and st == 200 for _, p, st in seen), seen
    assert any(p.endswith("/path") and st == 200 for _, p, st in seen), seen
    assert not [x for x in seen if x[2] >= 400], seen
    shots = os.environ.get("SONICSEARCH_SCREENSHOT_DIR")
    if shots:
        browser.execute_script("document.querySelector('#map-box').scrollIntoView()")
        browser.save_screenshot(str(Path(shots) / "map.png"))


def test_every_occurrence_and_the_duplicates_panel(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, clip, _, seen = site
    seen.clear()
    browser.get(url + "/")
    wait_for_info(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=occurrences]").click()
    upload(browser, url, clip, reload=False)
    assert browser.find_element(By.CSS_SELECTOR, ".chip.mode").text == "every occurrence"
    cards = browser.find_elements(By.CSS_SELECTOR, "article.result")
    assert cards and cards[0].find_element(By.CSS_SELECTOR, ".file").text == "glass-bells.wav"
    assert any("occurrences=true" in p or p == "/query" for _, p, _ in seen)
    browser.find_element(By.CSS_SELECTOR, "#dup-box summary").click()
    WebDriverWait(browser, 30).until(lambda d: "group" in d.find_element(
        By.ID, "dup-facts").text)
    groups = browser.find_elements(By.CSS_SELECTOR, ".dup-group")
    assert len(groups) == 1, browser.find_element(By.ID, "dup-facts").text
    names = {e.text for e in groups[0].find_elements(By.CSS_SELECTOR, ".dup-file .file")}
    assert names == {"night-frogs.wav", "night-frogs-quiet.wav"}
    groups[0].find_element(By.CSS_SELECTOR, "button.dup-file").click()
    audio = browser.find_element(By.ID, "dup-audio")
    assert "/audio#t=" in audio.get_attribute("src")
    WebDriverWait(browser, 20).until(  # the span plays
        lambda d: d.execute_script("return arguments[0].currentTime > 0", audio))
    assert any(p == "/duplicates" and st == 200 for _, p, st in seen), seen
    assert not [x for x in seen if x[2] >= 400], seen
    shots = os.environ.get("SONICSEARCH_SCREENSHOT_DIR")
    if shots:
        browser.save_screenshot(str(Path(shots) / "duplicates.png"))
