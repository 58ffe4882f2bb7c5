"""The journeys config and the span scenario several e2e tests share, with the metric
values it must produce, worked out by hand.

Latencies are chosen to read back exactly from cerflow's HDR-style histogram, which
reports the middle of a bin: every 50 ms x 2^k value (50, 100, 200, 400, 800 ms) is
the exact middle of its bin, so its quantile is that value in seconds.
"""

from __future__ import annotations

from conftest import Approx, key

CONFIG = """\
cohorts:
  keys: [cloud.region, app.plan.tier]
journeys:
  - name: checkout
    match:
      service: shop
      span_name: POST /checkout
      kind: server
    latency_threshold: 500ms
    incorrect:
      any:
        - attributes: [{key: app.order.valid, equals: false}]
        - event: order_total_mismatch
  - name: search
    match:
      span_name: {regex: "^GET /search"}
      kind: [server, consumer]
    latency_threshold: 250ms
    # Replaces the default rule: an HTTP 503 alone does not fail a search.
    failure:
      - status: error
      - attributes: [{key: search.results, lt: 0}]
    cohorts: []
"""

MS = 1_000_000
S = 1_000_000_000

# (name, kind, duration_ms, attributes, status, events, end_offset_s)
# kind is one of server/client/internal/consumer; status is None, "ok" or "error";
# end_offset_s is how long before "now" the span ended.
# The resource is {service.name: shop, cloud.region: eu-west-1}.
SPANS = [
    # checkout, cohort eu-west-1/gold
    ("POST /checkout", "server", 100, {"app.plan.tier": "gold"}, "ok", [], 3),              # good
    ("POST /checkout", "server", 200, {"app.plan.tier": "gold", "http.response.status_code": 503}, None, [], 3),  # failed (default rule)
    ("POST /checkout", "server", 800, {"app.plan.tier": "gold"}, None, [], 3),              # slow (> 500ms)
    ("POST /checkout", "server", 100, {"app.plan.tier": "gold"}, None, ["order_total_mismatch"], 3),  # incorrect (event)
    ("POST /checkout", "server", 500, {"app.plan.tier": "gold", "http.response.status_code": 200}, None, [], 3),  # exactly the threshold: not slow
    # checkout, cohort eu-west-1/free
    ("POST /checkout", "server", 200, {"app.plan.tier": "free"}, "error", [], 3),           # failed (status)
    # checkout, cohort us-east-1/free: the span attribute wins over the resource's
    ("POST /checkout", "server", 100, {"app.plan.tier": "free", "cloud.region": "us-east-1", "app.order.valid": False}, None, [], 3),  # incorrect (attribute)
    # checkout, no tier: cohort eu-west-1/unknown; 404 < 500 is no failure
    ("POST /checkout", "server", 100, {"http.response.status_code": 404}, None, [], 3),
    # not checkout: wrong kind (client, not an entry point) and wrong name (entry point)
    ("POST /checkout", "client", 100, {"app.plan.tier": "gold"}, None, [], 3),
    ("GET /health", "server", 100, {}, None, [], 3),
    # search (no cohorts)
    ("GET /search", "server", 50, {}, None, [], 3),                                         # good
    ("GET /search/suggest", "consumer", 400, {}, None, [], 3),                              # slow (> 250ms)
    ("GET /search", "server", 100, {"http.response.status_code": 503}, None, [], 3),        # good: custom failure rule
    ("GET /search", "server", 100, {}, "error", [], 3),                                     # failed
    ("GET /search", "internal", 100, {}, None, [], 3),                                      # not search: kind internal
    # ended 10 minutes ago: older than the longest window (5m), counted late, not recorded
    ("POST /checkout", "server", 100, {"app.plan.tier": "gold"}, None, [], 600),
]

RESOURCE = {"service.name": "shop", "cloud.region": "eu-west-1"}

N_SPANS = len(SPANS)  # 16
N_UNMATCHED = 3  # client checkout, GET /health, internal search
N_LATE = 1


def _journey_series(journey: str, requests: int, errors: int, slow: int, incorrect: int,
                    quantiles: dict, **cohort) -> dict:
    lbl = dict(journey=journey, **cohort)
    out = {
        key("cer_journey_requests_total", **lbl): requests,
        key("cer_journey_errors_total", **lbl): errors,
        key("cer_journey_slow_total", **lbl): slow,
        key("cer_journey_incorrect_total", **lbl): incorrect,
        key("cer_journey_duration_seconds_count", **lbl): requests,
    }
    for window, seconds in (("1m", 60), ("5m", 300)):
        w = dict(lbl, window=window)
        out[key("cer_sli_availability_ratio", **w)] = 1.0 - errors / requests
        out[key("cer_sli_latency_ratio", **w)] = 1.0 - slow / requests
        out[key("cer_sli_correctness_ratio", **w)] = 1.0 - incorrect / requests
        out[key("cer_journey_requests_per_second", **w)] = requests / seconds
        for q, v in quantiles.items():
            out[key("cer_journey_latency_seconds", quantile=q, **w)] = v
    return out


def _q(p50, p90, p95, p99):
    return {"0.5": p50, "0.9": p90, "0.95": p95, "0.99": p99}


def expected(transport: str) -> dict:
    """Every sample the scenario must produce when sent over `transport` (grpc, http or kafka)."""
    exp = {}
    gold = dict(cloud_region="eu-west-1", app_plan_tier="gold")
    # gold: 5 requests, latencies 100,200,800,100,500 ms -> sorted 100,100,200,500,800.
    # p50: rank ceil(0.5*5)=3 -> 200 ms; p90/p95/p99: rank 5 -> 800 ms.
    exp |= _journey_series("checkout", 5, 1, 1, 1, _q(0.2, 0.8, 0.8, 0.8), **gold)
    exp |= _journey_series("checkout", 1, 1, 0, 0, _q(0.2, 0.2, 0.2, 0.2),
                           cloud_region="eu-west-1", app_plan_tier="free")
    exp |= _journey_series("checkout", 1, 0, 0, 1, _q(0.1, 0.1, 0.1, 0.1),
                           cloud_region="us-east-1", app_plan_tier="free")
    exp |= _journey_series("checkout", 1, 0, 0, 0, _q(0.1, 0.1, 0.1, 0.1),
                           cloud_region="eu-west-1", app_plan_tier="unknown")
    # search: latencies 50,400,100,100 -> sorted 50,100,100,400; p50 rank 2 -> 100 ms,
    # p90 rank ceil(3.6)=4 -> 400 ms.
    exp |= _journey_series("search", 4, 1, 1, 0, _q(0.1, 0.4, 0.4, 0.4))
    # The cumulative histogram of gold (default bounds): 100,100 <= 0.1; 200 <= 0.25;
    # 500 <= 0.5 (a bound is inclusive); 800 <= 1.
    g = dict(journey="checkout", **gold)
    for le, n in (("0.05", 0), ("0.1", 2), ("0.25", 3), ("0.5", 4), ("1", 5), ("+Inf", 5)):
        exp[key("cer_journey_duration_seconds_bucket", le=le, **g)] = n
    exp[key("cer_journey_duration_seconds_sum", **g)] = Approx(0.1 + 0.2 + 0.8 + 0.1 + 0.5)
    exp[key("cerflow_received_spans_total", transport=transport)] = N_SPANS
    for other in ("grpc", "http"):
        if other != transport:
            exp[key("cerflow_received_spans_total", transport=other)] = 0
    exp[key("cerflow_processed_spans_total")] = N_SPANS
    exp[key("cerflow_unmatched_spans_total")] = N_UNMATCHED
    exp[key("cerflow_late_spans_total")] = N_LATE
    exp[key("cerflow_refused_spans_total", reason="invalid_span")] = 0
    exp[key("cerflow_series")] = 5
    # Entry points (server/consumer) within the windows: 8 checkout + GET /health + 4 search;
    # all but GET /health matched.
    exp[key("cer_telemetry_coverage_ratio", window="1m")] = 12 / 13
    exp[key("cer_definition_info", version="e2e")] = 1
    return exp


JOURNEY_LABEL_SETS = {
    frozenset({("journey", "checkout"), ("cloud_region", "eu-west-1"), ("app_plan_tier", "gold")}),
    frozenset({("journey", "checkout"), ("cloud_region", "eu-west-1"), ("app_plan_tier", "free")}),
    frozenset({("journey", "checkout"), ("cloud_region", "us-east-1"), ("app_plan_tier", "free")}),
    frozenset({("journey", "checkout"), ("cloud_region", "eu-west-1"), ("app_plan_tier", "unknown")}),
    frozenset({("journey", "search")}),
}


def check_series_sets(m) -> None:
    """No series beyond the expected ones: unmatched and late spans made none."""
    assert m.label_sets("cer_journey_requests_total") == JOURNEY_LABEL_SETS
