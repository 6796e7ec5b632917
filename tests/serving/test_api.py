"""attnapps.serve through FastAPI's test client (and once through a real uvicorn on loopback): what
each task answers, every bad request's 4xx JSON error, micro-batching equal to one-at-a-time."""

import io
import json
import threading
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from attnapps.serve import ServeConfig, create_app, load_runs  # noqa: E402
from tests.serving.conftest import served  # noqa: E402

pytestmark = pytest.mark.slow  # the tiny runs take about a minute to train


@pytest.fixture(scope="module")
def runs(tiny_runs):
    loaded = load_runs([str(d) for d, _ in tiny_runs.values()], batching="batch", window_ms=20)
    yield loaded
    for r in loaded.values():
        r.close()


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs, ServeConfig(max_texts=4, max_tokens=50, max_image_pixels=10**6, max_body_mb=0.2)))


def png(w=48, h=48, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def scene(tiny_runs) -> bytes:
    run_dir, _ = tiny_runs["captioning"]
    return next((run_dir.parent / "data" / "images").iterdir()).read_bytes()


def test_runs_lists_each_run_with_options_and_metrics(client, tiny_runs):
    runs = {r["task"]: r for r in client.get("/v1/runs").json()["runs"]}
    assert set(runs) == {"translation", "classification", "captioning", "generation"}
    # the options' defaults are the run's own decoding settings: the tiny translation run decoded with beam 2
    assert runs["translation"]["options"] == {"beam": 2, "alpha": 2.0} and runs["captioning"]["input"] == "image"
    assert runs["translation"]["metrics"]["test.bleu"] == tiny_runs["translation"][1]["test.bleu"]
    assert set(runs["generation"]["options"]) == {"max_new_tokens", "temperature", "top_k", "top_p", "seed"}


def test_each_task_answers_with_outputs_and_attention(client, tiny_runs):
    r = client.post("/v1/translation/predict", json={"text": "a b c d e", "options": {"beam": 3}}).json()
    assert r["outputs"] == ["e d c b a"] and r["examples"][0]["views"][0]["q"] == "output"
    r = client.post("/v1/classification/predict", json={"texts": ["the film was dull and weak overall",
                                                                  "the film was great and lovely overall"]}).json()
    assert r["outputs"] == ["neg", "pos"] and r["examples"][0]["label"]["pred"] == "neg"
    r = client.post("/v1/generation/predict", json={"text": "the cat", "options": {"max_new_tokens": 12,
                                                                                    "temperature": 0}}).json()
    assert r["outputs"][0].startswith(" sat on the") and len(r["examples"][0]["views"]) == 2
    r = client.post("/v1/captioning/predict", files={"image": ("scene.png", scene(tiny_runs), "image/png")},
                    data={"beam": "1"}).json()
    ex = r["examples"][0]
    assert r["outputs"][0] and ex["image"]["src"].startswith("data:image/jpeg") and ex["views"][0]["k"] == "image"


BAD = [  # (request, status, words of the message)
    (("post", "/v1/translation/predict", {"json": {"text": "  "}}), 422, "text: empty text"),
    (("post", "/v1/translation/predict", {"json": {"texts": ["a", ""]}}), 422, "texts[1]: empty text"),
    (("post", "/v1/translation/predict", {"json": {"texts": []}}), 422, "empty list"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "texts": ["b"]}}), 422, "exactly one"),
    (("post", "/v1/translation/predict", {"json": {"texts": ["a"] * 5}}), 413, "limit of 4"),
    (("post", "/v1/translation/predict", {"json": {"text": "a " * 60}}), 413, "tokens, over"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "options": {"beam": "x"}}}), 422, "option 'beam'"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "options": {"beam": 0}}}), 422, ">= 1"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "options": {"beam": 50}}}), 422, "limit of 16"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "options": {"input": "/etc/passwd"}}}), 422,
     "unknown option 'input'"),
    (("post", "/v1/translation/predict", {"json": {"txt": "a"}}), 422, "txt: Extra inputs"),
    (("post", "/v1/translation/predict", {"content": b"{oops", "headers": {"content-type": "application/json"}}),
     422, "not valid JSON"),
    (("post", "/v1/translation/predict", {"content": "{\"text\": \"caf\xe9\"}".encode("latin-1"),
                                          "headers": {"content-type": "application/json"}}), 422, "not UTF-8"),
    (("post", "/v1/captioning/predict", {"files": [("image", ("a.png", png(), "image/png"))] * 2}), 400,
     "Too many files"),
    (("post", "/v1/translation/predict", {"content": b"a", "headers": {"content-type": "text/plain"}}), 415,
     "application/json"),
    (("post", "/v1/translation/predict", {"content": b"x" * 300_000, "headers": {"content-type": "application/json"}}),
     413, "over the limit"),
    (("post", "/v1/nope/predict", {"json": {"text": "a"}}), 404, "unknown task 'nope'"),
    (("post", "/v1/translation/predict?run=../../etc", {"json": {"text": "a"}}), 404, "no run '../../etc'"),
    (("post", "/v1/captioning/predict", {"json": {"text": "a"}}), 415, "multipart/form-data"),
    (("post", "/v1/captioning/predict", {"files": {"image": ("a.png", b"not an image", "image/png")}}), 422,
     "cannot decode"),
    (("post", "/v1/captioning/predict", {"files": {"image": ("a.png", b"", "image/png")}}), 422, "empty file"),
    (("post", "/v1/captioning/predict", {"files": {"photo": ("a.png", png(), "image/png")}}), 422, "missing"),
    (("post", "/v1/captioning/predict", {"files": {"image": ("a.png", png(1200, 1000), "image/png")}}), 413,
     "1200x1000 pixels"),
    (("post", "/v1/captioning/predict", {"files": {"image": ("a.png", png(), "image/png")}, "data": {"beam": "-1"}}),
     422, "beam"),
    (("post", "/v1/generation/predict", {"json": {"text": "a", "options": {"max_new_tokens": 10_000}}}), 422,
     "limit of 400 (max_new_tokens)"),
    (("post", "/v1/translation/predict", {"json": {"text": "a", "options": {"beam": 17}}}), 422,
     "option 'beam': 17 is over this server's limit of 16 (max_beam)"),
    (("post", "/v1/generation/predict", {"json": {"text": "a", "options": {"temperature": [1]}}}), 422,
     "single value"),
    (("get", "/v1/nothing", {}), 404, "Not Found"),
    (("get", "/v1/translation/predict", {}), 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("request_, status, words", BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(client, request_, status, words):
    method, url, kwargs = request_
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["status"] == status and words in body["error"]["message"], body
    assert "Traceback" not in r.text


def test_docs_and_page_work_offline(client):
    docs = client.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn.jsdelivr" not in docs  # served by the app itself
    assert client.get("/openapi.json").json()["paths"]["/v1/{task}/predict"]["post"]
    page = client.get("/").text
    assert "data-mode='serve'" in page and "<script src" not in page


def test_concurrent_requests_equal_one_at_a_time(runs, tiny_runs):
    """16 threads at once through the micro-batcher give what each request gets alone (lock mode)."""
    texts = [" ".join("abcdefghij"[(i + k) % 10] for k in range(3 + i % 5)) for i in range(16)]
    alone = load_runs([str(tiny_runs["translation"][0])], batching="lock")
    lock_client = TestClient(create_app(alone))
    expected = [lock_client.post("/v1/translation/predict", json={"text": t, "options": {"beam": 1}}).json()
                for t in texts]
    client = TestClient(create_app(runs))
    got = [None] * len(texts)

    def ask(i):
        got[i] = client.post("/v1/translation/predict", json={"text": texts[i], "options": {"beam": 1}}).json()

    translation = next(r for r in runs.values() if r.task.name == "translation")
    before = (translation.calls, translation.batched_inputs)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, e in zip(got, expected):
        assert g["outputs"] == e["outputs"]
        assert g["examples"][0]["views"] == e["examples"][0]["views"]  # padding in a batch changes nothing
    calls, inputs = translation.calls - before[0], translation.batched_inputs - before[1]
    assert inputs == 16 and calls < 16  # requests were gathered into batches


def test_a_real_server_on_loopback(tiny_runs):
    with served(f"run={tiny_runs['classification'][0]}") as base:
        base = base.rstrip("/")
        runs = json.load(urllib.request.urlopen(f"{base}/v1/runs", timeout=5))
        assert [r["task"] for r in runs["runs"]] == ["classification"]
        req = urllib.request.Request(f"{base}/v1/classification/predict", method="POST",
                                     data=json.dumps({"text": "the film was awful and dull overall"}).encode(),
                                     headers={"Content-Type": "application/json"})
        assert json.load(urllib.request.urlopen(req, timeout=30))["outputs"] == ["neg"]
        bad = urllib.request.Request(f"{base}/v1/classification/predict", method="POST", data=b"{}",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=30)
        assert e.value.code == 422 and "exactly one" in json.load(e.value)["error"]["message"]


def test_auto_batching_batches_where_infer_batches(tiny_runs):
    loaded = load_runs([str(tiny_runs[t][0]) for t in ("translation", "generation")])  # batching=auto
    try:
        assert [r.batching for r in loaded.values()] == ["batch", "lock"]
    finally:
        for r in loaded.values():
            r.close()


def test_run_query_selects_among_runs_of_one_task(tiny_runs):
    """``?run=ID`` picks that run; without it, the task's first run; an ID of another task's run is a 404
    that lists the task's runs."""
    cls, mt = str(tiny_runs["classification"][0]), str(tiny_runs["translation"][0])
    loaded = load_runs([mt, cls, cls], batching="lock")  # ids from the folder name: run, run-2, run-3
    assert [(i, r.task.name) for i, r in loaded.items()] == [
        ("run", "translation"), ("run-2", "classification"), ("run-3", "classification")]
    c = TestClient(create_app(loaded))
    text = {"text": "the film was great and lovely overall"}
    assert c.post("/v1/classification/predict", json=text).json()["run"] == "run-2"
    assert c.post("/v1/classification/predict?run=run-3", json=text).json()["run"] == "run-3"
    r = c.post("/v1/classification/predict?run=run", json=text)
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no run 'run' of task=classification; loaded: run-2, run-3"


@pytest.mark.parametrize("batching", ["lock", "batch"])
def test_a_request_that_waits_past_timeout_s_gets_503(tiny_runs, batching):
    """While another request holds the model (its lock held here), a request gives up after
    ``timeout_s`` with a 503 JSON error naming the run; once the model is free it is answered."""
    import time

    loaded = load_runs([str(tiny_runs["classification"][0])], batching=batching)
    c = TestClient(create_app(loaded, ServeConfig(timeout_s=0.3)))
    body = {"text": "the film was dull and weak overall"}
    run = loaded["run"]
    with run.lock:
        start = time.monotonic()
        r = c.post("/v1/classification/predict", json=body)
        waited = time.monotonic() - start
    assert r.status_code == 503 and 0.3 <= waited < 5
    message = r.json()["error"]["message"]
    assert message.startswith("run run is busy: no") and "within 0.3 s" in message
    assert c.post("/v1/classification/predict", json=body).json()["outputs"] == ["neg"]
    run.close()
