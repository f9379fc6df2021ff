"""GET /v1/isa, /healthz, /metrics and the OpenAPI document."""

from __future__ import annotations

from isa_specs import load_isa
from tests.api.test_runs import load_request, x_values


def test_isa_is_the_spec(client):
    body = client.get("/v1/isa").json()
    spec = load_isa()
    assert [op["mnemonic"] for op in body["ops"]] == [op.mnemonic for op in spec.ops]
    assert {op["mnemonic"]: op["opcode"] for op in body["ops"]} == spec.opcode_constants()
    assert body["fields"]["opcode"] == {"lsb": spec.fields["opcode"].lsb, "width": spec.fields["opcode"].width}
    assert body["groups"] == {k: list(v) for k, v in spec.groups.items()}


def test_health(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["workers"] == 2 and body["workers_ready"] == 2
    assert body["database"] == "ok" and body["warmup_problems"] == []


def test_metrics_count_runs_and_requests(client):
    before = client.get("/metrics").text
    assert client.post("/v1/runs", json=load_request(x_values())).status_code == 200
    text = client.get("/metrics").text

    def value(doc: str, series: str) -> float:
        line = next((ln for ln in doc.splitlines() if ln.startswith(series + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    series = 'plena_runs_total{status="succeeded"}'
    assert value(text, series) == value(before, series) + 1
    assert value(text, "plena_emulated_instructions_total") >= value(before, "plena_emulated_instructions_total") + 3
    assert value(text, 'plena_http_requests_total{method="POST",route="/v1/runs",status="200"}') >= 1
    assert "plena_workers_ready 2.0" in text


def test_openapi_is_complete_with_examples(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, methods in {"/v1/runs": {"post", "get"}, "/v1/runs/files": {"post"},
                          "/v1/runs/{run_id}": {"get", "delete"}, "/v1/runs/{run_id}/events": {"get"},
                          "/v1/runs/{run_id}/trace": {"get"}, "/v1/runs/{run_id}/dumps/{name}": {"get"},
                          "/v1/assemble": {"post"}, "/v1/disassemble": {"post"}, "/v1/estimate": {"post"},
                          "/v1/isa": {"get"}, "/healthz": {"get"}, "/metrics": {"get"}}.items():
        assert methods <= set(paths[path]), path
    post = paths["/v1/runs"]["post"]
    assert {"200", "202", "400", "409", "413", "422", "429"} <= set(post["responses"])
    assert "Retry-After" in post["responses"]["429"]["headers"]
    schemas = doc["components"]["schemas"]
    for name in ("RunRequest", "ProgramIn", "TensorIn", "VramRegionIn", "RunOut", "AssembleRequest"):
        assert schemas[name].get("examples"), name
    assert paths["/v1/runs/{run_id}/events"]["get"]["responses"]["200"]["content"].get("text/event-stream") is not None


def test_the_openapi_example_runs(client):
    doc = client.get("/openapi.json").json()
    example = doc["components"]["schemas"]["RunRequest"]["examples"][0]
    r = client.post("/v1/runs", json=example)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [4, 64]
