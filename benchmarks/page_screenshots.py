"""Screenshots of the web page on real music, for docs/: a clip's matches, every occurrence
of a jingle, the duplicates panel, and the map with a similarity path.

Takes the index ``benchmarks/browse.py --keep DIR`` built (excerpts of the Debian
evaluation pool, a folder per soundtrack) and adds, incrementally, a few made files: an
mp3 re-encode and a 10 s-trimmed copy of two tracks, and a 3-minute programme of other
tracks with a 5 s jingle aired 4 times. Then serves it (the real server, the index's own
model) and drives Debian's chromium through selenium (as tests/serve/test_serve_browser.py
does):

    python benchmarks/browse.py --keep cache/browse-index
    python benchmarks/page_screenshots.py cache/browse-index --out docs

Writes OUT/serve.png (an 8 s noisy excerpt of an indexed track, same recording),
OUT/serve-occurrences.png, OUT/serve-duplicates.png and OUT/serve-map.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

SR = 22050
WIDTH, HEIGHT = 1100, 1250


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path, help="the folder browse.py --keep wrote (audio/, idx/)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    p.add_argument("--port", type=int, default=8765)
    return p.parse_args(argv)


def add_made_files(work: Path) -> tuple[Path, Path]:
    """Copies, a programme with a jingle, the query clips; (noisy clip, jingle)."""
    import soundfile as sf

    from sonicsearch.audio import load_audio

    tracks = sorted((work / "audio").rglob("*.wav"))
    made = work / "made"
    shutil.rmtree(made, ignore_errors=True)
    made.mkdir()
    for src in tracks[3], tracks[40]:
        w, _ = load_audio(src, sample_rate=SR)
        sf.write(made / f"{src.stem}-copy.mp3", w, SR, format="MP3", subtype="MPEG_LAYER_III")
        sf.write(made / f"{src.stem}-trimmed.wav", w[int(10 * SR):], SR)
    rng = np.random.default_rng(0)
    parts = [load_audio(t, sample_rate=SR)[0] for t in tracks[100:106]]
    programme = 0.8 * np.concatenate(parts)
    jingle = load_audio(tracks[150], sample_rate=SR, offset=10.0, duration=5.0)[0]
    for k, at in enumerate((12.0, 61.0, 104.0, 160.0)):
        a = int(at * SR)
        programme[a : a + len(jingle)] = jingle * 10 ** (-3 * k / 20)
    sf.write(made / "programme.wav", programme + 0.005 * rng.standard_normal(len(programme)),
             SR)
    queries = work / "queries"
    queries.mkdir(exist_ok=True)
    sf.write(queries / "jingle.wav", jingle, SR)
    clip = load_audio(tracks[60], sample_rate=SR, offset=8.0, duration=8.0)[0]
    noisy = clip + 0.1 * float(np.sqrt(np.mean(clip**2))) * rng.standard_normal(len(clip))
    sf.write(queries / f"{tracks[60].stem}-noisy.wav", noisy.astype(np.float32), SR)
    return queries / f"{tracks[60].stem}-noisy.wav", queries / "jingle.wav"


def serve(index: Path, port: int):
    import uvicorn

    from sonicsearch.serve import ServeSettings, create_app

    app = create_app(ServeSettings(index, device="cpu", port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return server


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                            options=opts)


def upload(driver, url: str, clip: Path, mode: str, ranked: bool = False) -> None:
    """Ask with ``clip``; ``ranked``: the 4 best files, threshold off, filters shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 60).until(lambda d: "files" in d.find_element(By.ID,
                                                                        "index-info").text)
    if ranked:
        driver.execute_script("document.querySelector('#filters').open = true;"
                              "document.querySelector('[name=k]').value = 4;"
                              "document.querySelector('#min-mode').value = 'off';")
    driver.find_element(By.CSS_SELECTOR, f"input[name=mode][value={mode}]").click()
    driver.find_element(By.ID, "file").send_keys(str(clip.resolve()))
    WebDriverWait(driver, 120).until(lambda d: " in " in d.find_element(By.ID, "status").text)
    settle(driver)


def settle(driver) -> None:
    """Wait until every spectrogram is drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('canvas.spec')].every(c => c.width > 0)"))
    time.sleep(1.0)


def shoot_map(driver, url: str, out: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 60).until(lambda d: "files" in d.find_element(By.ID,
                                                                        "index-info").text)
    driver.find_element(By.CSS_SELECTOR, "#map-box summary").click()
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return mapState.data !== null && mapState.xy.length > 0"))
    driver.find_element(By.CSS_SELECTOR, "#map-colour option[value=folder]").click()
    # a path between the two files farthest apart on the map's x axis
    driver.execute_script(
        "const xs = mapState.data.points.map(p => p.x);"
        "pick(xs.indexOf(Math.min(...xs)), false); setEnd('start');"
        "pick(xs.indexOf(Math.max(...xs)), false); setEnd('end');")
    WebDriverWait(driver, 60).until(lambda d: "similarity path" in d.find_element(
        By.ID, "status").text)
    settle(driver)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(out / "serve-map.png"))


def shoot_duplicates(driver, url: str, out: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 60).until(lambda d: "files" in d.find_element(By.ID,
                                                                        "index-info").text)
    driver.find_element(By.CSS_SELECTOR, "#dup-box summary").click()
    WebDriverWait(driver, 300).until(lambda d: "group" in d.find_element(By.ID,
                                                                         "dup-facts").text)
    time.sleep(1.0)
    driver.save_screenshot(str(out / "serve-duplicates.png"))


def main(argv: list[str] | None = None) -> None:
    from sonicsearch.index import AudioIndex

    args = parse_args(argv)
    clip, jingle = add_made_files(args.work)
    AudioIndex.build([args.work / "audio", args.work / "made"], "base", args.work / "idx",
                     device="cpu").close()
    server = serve(args.work / "idx", args.port)
    url = f"http://127.0.0.1:{args.port}"
    driver = browser()
    try:
        upload(driver, url, clip, "recording", ranked=True)
        driver.save_screenshot(str(args.out / "serve.png"))
        upload(driver, url, jingle, "occurrences")
        driver.save_screenshot(str(args.out / "serve-occurrences.png"))
        shoot_duplicates(driver, url, args.out)
        shoot_map(driver, url, args.out)
    finally:
        driver.quit()
        server.should_exit = True
    print(f"wrote {', '.join(p.name for p in sorted(args.out.glob('serve*.png')))}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
