"""The server's edges: one JSON error shape for every 4xx and 5xx (docs/schemas/
error.schema.json), non-finite ``min_score`` refused, raw-body file names reduced to a base
name, ``/docs`` and the favicon served from the package (nothing from a CDN), tokens with
any printable character."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from jsonschema import Draft202012Validator
from serve_fixtures import TOKENS, ThreadServer, serve_app

from sonicsearch.errors import ConfigError
from sonicsearch.index import build_index
from sonicsearch.serve import ServeSettings, create_app
from sonicsearch.serve.media import file_id
from sonicsearch.serve.security import check_token, loopback_host_header, token_ok

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas" / "error.schema.json")
                    .read_text(encoding="utf-8"))
TOKEN = TOKENS[0]


class Crashing(FakeEmbedder):
    def embed_file(self, path):
        raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    files = make_corpus(root / "audio", 4, seconds=4.0)
    build_index([root / "audio"], FakeEmbedder(root / "model.pt"), root / "idx")
    clip = root / "clip.wav"
    sf.write(str(clip), sound(1, 4.0)[: 3 * SR], SR)
    return root, files, clip


@pytest.fixture(scope="module")
def server(corpus):
    root = corpus[0]
    with ThreadServer(serve_app(root / "idx", root / "model.pt", token=TOKEN)) as srv:
        with httpx.Client(base_url=srv.url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield client


def post(client, clip: Path, **params):
    return client.post("/query", params=params,
                       files={"file": (clip.name, clip.read_bytes(), "audio/wav")})


def assert_error(res: httpx.Response, status: int) -> dict:
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json", res.text
    body = res.json()
    problems = [f"{e.json_path}: {e.message}" for e in Draft202012Validator(SCHEMA)
                .iter_errors(body)]
    assert not problems, (body, problems)
    assert body["status"] == status
    return body


def test_the_error_schema_is_valid_and_describes_every_field():
    Draft202012Validator.check_schema(SCHEMA)
    props = {**SCHEMA["properties"], **SCHEMA["properties"]["errors"]["items"]["properties"]}
    assert all("description" in p for p in props.values())


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e400"])
def test_a_non_finite_min_score_is_refused(server, corpus, value):
    clip = corpus[2]
    body = assert_error(post(server, clip, min_score=value), 422)
    assert body["errors"][0]["field"] == "min_score" and "finite" in body["detail"]
    res = server.post("/query", data={"min_score": value},  # the same as a form field
                      files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
    assert assert_error(res, 422)["errors"][0]["field"] == "min_score"
    assert post(server, clip, min_score="0.25").status_code == 200
    for field in ("min_duration", "max_duration"):  # no other number is infinite either
        assert assert_error(post(server, clip, **{field: value}), 422)["errors"][0][
            "field"] == field


def test_every_error_has_the_one_shape(server, corpus):
    _, files, clip = corpus
    fid = file_id(str(files[0].resolve()))
    size = files[0].stat().st_size
    anonymous = httpx.Client(base_url=server.base_url, timeout=30)
    body = assert_error(anonymous.get("/info"), 401)
    assert "Bearer" in body["detail"] and body["errors"] == []
    assert_error(server.get("/no-such-page"), 404)
    assert_error(server.get("/static/no-such-file.js"), 404)
    assert_error(server.get("/files/ffffffffffffffff"), 404)
    assert_error(server.delete("/info"), 405)
    body = assert_error(post(server, clip, k=0, rollup="best"), 422)
    assert {e["field"] for e in body["errors"]} == {"k", "rollup"}
    assert "k: " in body["detail"] and "rollup: " in body["detail"]
    body = assert_error(server.post("/query", data={"k": "many"},
                                    files={"file": ("c.wav", clip.read_bytes())}), 422)
    assert body["errors"][0]["field"] == "k"
    assert "swap" in assert_error(post(server, clip, min_duration=5, max_duration=1),
                                  422)["detail"]
    assert_error(server.post("/query", content=b"x", headers={"content-type": "text/plain"}),
                 415)
    assert_error(server.get(f"/files/{fid}/spectrogram", params={"start": "nan"}), 422)
    res = server.get(f"/files/{fid}/audio", headers={"Range": f"bytes={size}-"})
    assert assert_error(res, 416) and res.headers["content-range"] == f"bytes */{size}"
    body = assert_error(server.get("/healthz", headers={"Host": "evil.example"}), 400)
    assert "evil.example" in body["detail"]
    assert server.get("/healthz", headers={"Host": "[::1]:8000"}).status_code == 200


def test_a_crash_is_a_json_500(corpus):
    root, _, clip = corpus
    app = create_app(ServeSettings(root / "idx"), embedder=Crashing(root / "model.pt"))
    with ThreadServer(app) as srv:
        res = httpx.post(srv.url + "/query", timeout=30,
                         files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
    body = assert_error(res, 500)
    assert "a bug" not in body["detail"] and "log" in body["detail"]


def test_openapi_documents_the_error_shape(server):
    spec = server.get("/openapi.json").json()
    assert set(spec["components"]["schemas"]["ErrorBody"]["properties"]) == \
        set(SCHEMA["properties"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "4XX" in spec["paths"]["/query"]["post"]["responses"]


@pytest.mark.parametrize("name, shown", [
    ("../../etc/passwd", "passwd"), ("/abs/dir/clip.wav", "clip.wav"),
    ("C:\\Users\\me\\clip.wav", "clip.wav"), ("..", "upload"), ("dir/", "upload")])
def test_a_raw_body_name_is_reduced_to_a_base_name(server, corpus, name, shown):
    clip = corpus[2]
    res = server.post("/query", params={"filename": name}, content=clip.read_bytes(),
                      headers={"content-type": "audio/wav"})
    assert res.status_code == 200 and res.json()["query"] == shown
    res = server.post("/query", files={"file": (name, clip.read_bytes(), "audio/wav")})
    assert res.json()["query"] == shown  # multipart names alike


def test_docs_page_and_favicon_are_local(server):
    page = server.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links and all(link.startswith("/") for link in links), links
    assert "<script" not in page.text
    for words in ("POST /query", "min_score", "GET /files/{fid}/audio", "errors"):
        assert words in page.text
    assert server.get("/redoc").status_code == 404
    for path in ("/favicon.ico", *[link for link in links if link != "/"]):
        assert server.get(path).status_code == 200, path
    icon = server.get("/favicon.ico")
    assert icon.headers["content-type"] == "image/svg+xml" and b"<svg" in icon.content
    assert 'rel="icon"' in server.get("/").text


@pytest.mark.parametrize("token", TOKENS)
def test_any_printable_token_works_in_header_and_cookie(token):
    header = "Bearer " + token.encode("utf-8").decode("latin-1")  # as the server decodes it
    assert token_ok(token, header, None)
    assert token_ok(token, None, quote(token, safe="-_.!~*'()"))  # encodeURIComponent
    assert not token_ok(token, None, quote(token + "x"))
    assert not token_ok(token, "Bearer " + token[:-1], None)


def test_a_spaced_token_over_http(corpus):
    root, files, clip = corpus
    fid = file_id(str(files[0].resolve()))
    token = TOKENS[3]
    with ThreadServer(serve_app(root / "idx", root / "model.pt", token=token)) as srv:
        auth = {"Authorization": b"Bearer " + token.encode("utf-8")}
        assert httpx.get(srv.url + "/info", headers=auth).status_code == 200
        cookie = {"Cookie": "sonicsearch_token=" + quote(token, safe="-_.!~*'()")}
        assert httpx.get(f"{srv.url}/files/{fid}/audio", headers=cookie).status_code == 200
        assert httpx.get(srv.url + "/info").status_code == 401


@pytest.mark.parametrize("token, why", [
    ("tab\there-and-sixteen+", "control character (U+0009"),
    ("bell\x07-and-sixteen-chars", "control character (U+0007"),
    ("line\nbreak-sixteen-chars", "control character (U+000A"),
    ("c1\x85-control-and-sixteen", "control character (U+0085"),
    (" leading-space-sixteen", "whitespace"), ("trailing-space-sixteen ", "whitespace"),
    ("bad-\udcff-bytes-sixteen", "not valid UTF-8"), ("short one", "at least 16")])
def test_tokens_no_client_could_send_are_refused(token, why):
    with pytest.raises(ConfigError, match=re.escape(why)) as err:
        check_token(token)
    assert token not in str(err.value)


def test_the_cli_refuses_a_control_character_in_one_line(corpus):
    out = subprocess.run([sys.executable, "-m", "sonicsearch", "serve", "--index",
                          str(corpus[0] / "idx"), "--token", "sixteen\x1bcharacters!"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ")
    assert "control character (U+001B" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("localhost:8000", True), ("[::1]:80", True), ("LOCALHOST", True),
    ("evil.example", False), ("127.0.0.1.evil.example", False), ("", False),
    ("[::2]:80", False), ("localhost:80:80", False)])
def test_loopback_host_header(host, ok):
    assert loopback_host_header(host) is ok
