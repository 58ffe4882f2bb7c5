//! Realistic OTLP trace payloads, encoded once and re-stamped cheaply.
//!
//! A [`Template`] is an `ExportTraceServiceRequest` body written by a small protobuf
//! encoder that remembers where every span's start and end timestamps sit, so making
//! the spans "now" again is two 8-byte writes per span, never a re-encode.
//!
//! Spans look like what an HTTP server instrumented with OpenTelemetry sends: kind
//! SERVER, names like `POST /checkout`, ten semantic-convention span attributes and
//! seven resource attributes (about 430 bytes per span on the wire). With
//! `dependencies`, each request also calls that many dependencies ([`DEPENDENCIES`]):
//! CLIENT children in the same trace with `peer.service`; a failed call fails its request.

use crate::rng::Rng;

/// What a journey's spans look like.
#[derive(Debug, Clone)]
pub struct JourneySpec {
    pub name: String,
    pub method: &'static str,
    pub route: String,
    pub service: String,
}

/// One value of the cohort attributes: `cloud.region` (resource) x `app.plan.tier` (span).
#[derive(Debug, Clone)]
pub struct CohortSpec {
    pub region: String,
    pub tier: String,
}

const CATALOG: [(&str, &str, &str, &str); 10] = [
    ("checkout", "POST", "/checkout", "checkout-service"),
    ("cart", "GET", "/cart", "cart-service"),
    ("login", "POST", "/login", "auth-service"),
    ("search", "GET", "/search", "search-service"),
    ("product", "GET", "/products/{id}", "catalog-service"),
    ("payment", "POST", "/payments", "payment-service"),
    ("orders", "GET", "/orders", "order-service"),
    ("profile", "GET", "/account/profile", "account-service"),
    (
        "recommendations",
        "GET",
        "/recommendations",
        "recommendation-service",
    ),
    ("shipping", "POST", "/shipping/quote", "shipping-service"),
];

const REGIONS: [&str; 10] = [
    "us-east-1",
    "eu-west-1",
    "ap-southeast-1",
    "us-west-2",
    "eu-central-1",
    "sa-east-1",
    "ap-northeast-1",
    "ca-central-1",
    "eu-north-1",
    "af-south-1",
];

const TIERS: [&str; 5] = ["free", "pro", "team", "business", "enterprise"];

pub fn journeys(n: usize) -> Vec<JourneySpec> {
    (0..n.max(1))
        .map(|i| match CATALOG.get(i) {
            Some(&(name, method, route, service)) => JourneySpec {
                name: name.into(),
                method,
                route: route.into(),
                service: service.into(),
            },
            None => JourneySpec {
                name: format!("journey-{i}"),
                method: "GET",
                route: format!("/api/journey-{i}"),
                service: format!("api-service-{}", i % 7),
            },
        })
        .collect()
}

/// `n` cohorts: regions first (up to ten real region names, then made-up ones), then tiers.
pub fn cohorts(n: usize) -> Vec<CohortSpec> {
    let n = n.max(1);
    let regions = n.min(REGIONS.len());
    (0..n)
        .map(|i| {
            let r = i % regions;
            let t = i / regions;
            CohortSpec {
                region: REGIONS[r].to_string(),
                tier: match TIERS.get(t) {
                    Some(s) => s.to_string(),
                    None => format!("tier-{t}"),
                },
            }
        })
        .collect()
}

/// Calls a request can make at most; past the 8 dependencies the calls go round them
/// again, so a request of 20 spans (a trace of 20) is `--dependencies 19`.
pub const MAX_CALLS: usize = 32;

/// The resource's `service.version` unless a scenario phase names another.
pub const DEFAULT_VERSION: &str = "1.42.0";

/// The dependencies requests call, in order: `--dependencies 2` calls the first two.
pub const DEPENDENCIES: [&str; 8] = [
    "payments",
    "inventory",
    "postgresql",
    "redis",
    "search-index",
    "email",
    "fraud-check",
    "tax",
];

/// How one journey x cohort behaves in a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    pub error_rate: f64,
    /// Median latency in milliseconds.
    pub latency_ms: f64,
    /// Sigma of the log-normal latency distribution (0 = every span takes the median).
    pub spread: f64,
    /// A dependency (index into [`DEPENDENCIES`]) whose calls fail at this rate; its
    /// failed calls fail their request too.
    pub dependency_fault: Option<(usize, f64)>,
}

impl Behaviour {
    pub fn sample_duration_ns(&self, rng: &mut Rng) -> u64 {
        let z = rng.normal();
        let ms = self.latency_ms * (self.spread * z).exp();
        ((ms * 1e6) as u64).clamp(10_000, 600_000_000_000)
    }
}

/// A request body whose span timestamps can be moved to "now" in place.
#[derive(Debug, Clone)]
pub struct Template {
    pub body: Vec<u8>,
    pub spans: usize,
    /// For each span: offsets of the start and end values, its duration, and how long
    /// before "now" it ended.
    stamps: Vec<Stamp>,
    /// The timestamps are 19 decimal digits in OTLP/JSON text, not fixed64s.
    text: bool,
}

#[derive(Debug, Clone, Copy)]
struct Stamp {
    start_at: u32,
    end_at: u32,
    duration_ns: u64,
    age_ns: u64,
    /// Offset of the user id's [`USER_DIGITS`] digits, or [`NO_USER`].
    user_at: u32,
    cohort: u32,
    /// Offset of the trace id (its 16 bytes, or 32 hex digits in JSON).
    trace_at: u32,
}

/// A span's `enduser.id` is `u` and this many digits, rewritten in place like the times.
pub const USER_DIGITS: usize = 10;
const USER_PLACEHOLDER: &str = "u0000000000";
const NO_USER: u32 = u32::MAX;

/// Who the spans' users are: `per_cohort` users in each of `cohorts` cohorts, a user
/// belonging to one cohort (a customer has one region and one plan), so `per_cohort x
/// cohorts` distinct users in all. User `k x cohorts + c` is the k-th user of cohort c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPool {
    pub per_cohort: u64,
    pub cohorts: u64,
}

impl UserPool {
    /// `total` users split evenly among `cohorts` (at least one each).
    pub fn new(total: u64, cohorts: usize) -> UserPool {
        let cohorts = cohorts.max(1) as u64;
        UserPool {
            per_cohort: (total / cohorts).max(1),
            cohorts,
        }
    }

    pub fn distinct(&self) -> u64 {
        self.per_cohort * self.cohorts
    }
}

impl Template {
    /// Rewrites every span so that it ended `age` before `now_ns`.
    pub fn stamp(&self, body: &mut [u8], now_ns: u64) {
        for s in &self.stamps {
            let end = now_ns.saturating_sub(s.age_ns);
            let start = end.saturating_sub(s.duration_ns);
            let put = if self.text { put_digits_at } else { put_at };
            put(body, s.end_at as usize, end);
            put(body, s.start_at as usize, start);
        }
    }

    /// Gives every trace of the body new ids for `generation`: its first 8 bytes (the
    /// last 8 stay the template's random ones, so traces stay distinct within and across
    /// bodies). A body is sent many times between two stampings; with the same ids each
    /// time its traces would keep growing and never complete in cerflow's trace buffer.
    pub fn renew_traces(&self, body: &mut [u8], generation: u64) {
        let g = generation.to_be_bytes();
        for s in &self.stamps {
            let at = s.trace_at as usize;
            if self.text {
                if let Some(dst) = body.get_mut(at..at + 16) {
                    for (i, b) in g.iter().enumerate() {
                        dst[2 * i] = HEX[usize::from(b >> 4)];
                        dst[2 * i + 1] = HEX[usize::from(b & 15)];
                    }
                }
            } else if let Some(dst) = body.get_mut(at..at + 8) {
                dst.copy_from_slice(&g);
            }
        }
    }

    /// Names a user of each span's cohort, drawn at random from `pool`, in place.
    pub fn draw_users(&self, body: &mut [u8], pool: &UserPool, rng: &mut Rng) {
        for s in self.stamps.iter().filter(|s| s.user_at != NO_USER) {
            let k = rng.next_u64() % pool.per_cohort;
            let user = k * pool.cohorts + u64::from(s.cohort);
            put_user_digits(body, s.user_at as usize, user);
        }
    }

    /// The same request as OTLP/JSON, as browser and Node SDKs send it (hex ids,
    /// integer enums, 64-bit integers as strings), re-stamped in place like the protobuf
    /// body: every timestamp is 19 digits from 2001 to 2286.
    pub fn to_json(&self) -> Result<Template, String> {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let mut req = ExportTraceServiceRequest::decode(&self.body[..])
            .map_err(|e| format!("the template does not decode: {e}"))?;
        for span in req
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
        {
            span.start_time_unix_nano = PLACEHOLDER_NS;
            span.end_time_unix_nano = PLACEHOLDER_NS;
        }
        let text = serde_json::to_string(&req).map_err(|e| format!("cannot write JSON: {e}"))?;
        // An unset status is omitted, as protobuf JSON writers do; serde writes `null`.
        let body = text.replace(r#","status":null"#, "").into_bytes();
        let starts = value_offsets(&body, "startTimeUnixNano");
        let ends = value_offsets(&body, "endTimeUnixNano");
        let traces = string_offsets(&body, "traceId");
        // The placeholder ids, in span order; only spans with a user have one.
        let mut users = placeholder_offsets(&body).into_iter();
        if starts.len() != self.stamps.len()
            || ends.len() != self.stamps.len()
            || traces.len() != self.stamps.len()
        {
            return Err(format!(
                "{} start and {} end times in the JSON, {} spans",
                starts.len(),
                ends.len(),
                self.stamps.len()
            ));
        }
        let stamps = self
            .stamps
            .iter()
            .zip(starts.into_iter().zip(ends).zip(traces))
            .map(|(s, ((start_at, end_at), trace_at))| Stamp {
                start_at: start_at as u32,
                end_at: end_at as u32,
                trace_at: trace_at as u32,
                user_at: if s.user_at == NO_USER {
                    NO_USER
                } else {
                    users.next().map_or(NO_USER, |at| at as u32)
                },
                ..*s
            })
            .collect();
        Ok(Template {
            body,
            spans: self.spans,
            stamps,
            text: true,
        })
    }
}

/// A 19-digit time the JSON templates are written with, then found and overwritten.
const PLACEHOLDER_NS: u64 = 1_000_000_000_000_000_000;

/// Offsets of the 19 digits of each `"field":"1000000000000000000"` in `body`, in order.
fn value_offsets(body: &[u8], field: &str) -> Vec<usize> {
    let needle = format!("\"{field}\":\"{PLACEHOLDER_NS}\"");
    let n = needle.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = body
        .get(i..)
        .and_then(|rest| rest.windows(n.len()).position(|w| w == n))
    {
        out.push(i + at + n.len() - 20);
        i += at + n.len();
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Offsets of the values of every string `field` in `body`, in order.
fn string_offsets(body: &[u8], field: &str) -> Vec<usize> {
    let needle = format!("\"{field}\":\"");
    let n = needle.as_bytes();
    body.windows(n.len())
        .enumerate()
        .filter(|(_, w)| *w == n)
        .map(|(i, _)| i + n.len())
        .collect()
}

/// Offsets of the digits of each user id placeholder in `body`, in order.
fn placeholder_offsets(body: &[u8]) -> Vec<usize> {
    let n = USER_PLACEHOLDER.as_bytes();
    body.windows(n.len())
        .enumerate()
        .filter(|(_, w)| *w == n)
        .map(|(i, _)| i + 1)
        .collect()
}

/// Writes a user number as [`USER_DIGITS`] decimal digits, zero-padded.
fn put_user_digits(body: &mut [u8], at: usize, mut v: u64) {
    if let Some(dst) = body.get_mut(at..at + USER_DIGITS) {
        for d in dst.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
}

fn put_at(body: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = body.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes `v` as 19 decimal digits, zero-padded (a u64 time is below 10^19 until 2286).
fn put_digits_at(body: &mut [u8], at: usize, mut v: u64) {
    if let Some(dst) = body.get_mut(at..at + 19) {
        for d in dst.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
}

/// Everything that decides what the spans of one phase look like.
pub struct Shape<'a> {
    /// Calls each request makes (CLIENT children), 0 to [`MAX_CALLS`], to the
    /// [`DEPENDENCIES`] in turn.
    pub dependencies: usize,
    pub journeys: &'a [JourneySpec],
    pub cohorts: &'a [CohortSpec],
    /// The behaviour of journey `j` in cohort `c`.
    pub behaviour: &'a dyn Fn(usize, usize) -> Behaviour,
    /// Each span names a user in `enduser.id` (a placeholder [`Template::draw_users`]
    /// replaces).
    pub users: bool,
    /// Each span carries an order value in `app.order.value` (a double, EUR, log-normal
    /// with median 40 and sigma 0.8, drawn once per span when the pool is built).
    pub order_value: bool,
    /// The resource's `service.version` (a scenario phase's `version`).
    pub version: &'a str,
}

const UA: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile";

/// Builds one request of `n` spans, each of a random journey and cohort, grouped by
/// resource (service x region) as an SDK's batch exporter would send them. With
/// dependencies, `n` spans make `n / (1 + dependencies)` requests (at least one).
pub fn build(shape: &Shape<'_>, n: usize, rng: &mut Rng) -> Template {
    let deps = shape.dependencies.min(MAX_CALLS);
    let requests = (n / (1 + deps)).max(1);
    // One resource per (service, region): its first journey and cohort, and its spans'.
    type Group = (usize, usize, Vec<(usize, usize)>);
    let mut groups: Vec<Group> = Vec::new();
    for _ in 0..requests {
        let j = rng.below(shape.journeys.len());
        let c = rng.below(shape.cohorts.len());
        let service = &shape.journeys[j].service;
        let region = &shape.cohorts[c].region;
        match groups.iter_mut().find(|(gj, gc, _)| {
            shape.journeys[*gj].service == *service && shape.cohorts[*gc].region == *region
        }) {
            Some(g) => g.2.push((j, c)),
            None => groups.push((j, c, vec![(j, c)])),
        }
    }
    let mut body = Vec::with_capacity(n * 450 + 64);
    let mut stamps = Vec::with_capacity(n);
    for (gj, gc, spans) in &groups {
        let mut rs = Vec::with_capacity(spans.len() * 450 + 600);
        let journey = &shape.journeys[*gj];
        let cohort = &shape.cohorts[*gc];
        let host = format!(
            "ip-10-0-{}-{}.ec2.internal",
            rng.below(16),
            rng.below(250) + 2
        );
        let mut resource = Vec::with_capacity(300);
        for (k, v) in [
            ("service.name", journey.service.as_str()),
            ("service.version", shape.version),
            ("service.namespace", "shop"),
            ("deployment.environment.name", "production"),
            ("cloud.provider", "aws"),
            ("cloud.region", cohort.region.as_str()),
            ("host.name", host.as_str()),
        ] {
            put_msg(&mut resource, 1, &kv_str(k, v));
        }
        put_msg(&mut rs, 1, &resource);
        let mut ss = Vec::with_capacity(spans.len() * 450 + 64);
        let mut scope = Vec::new();
        put_str(&mut scope, 1, "io.opentelemetry.contrib.http-server");
        put_str(&mut scope, 2, "1.28.0");
        put_msg(&mut ss, 1, &scope);
        let mut span_stamps = Vec::with_capacity(spans.len());
        for &(j, c) in spans {
            let b = (shape.behaviour)(j, c);
            let failed_calls: Vec<bool> = (0..deps)
                .map(
                    |d| matches!(b.dependency_fault, Some((f, rate)) if f == d % DEPENDENCIES.len() && rng.chance(rate)),
                )
                .collect();
            let call_failed = failed_calls.iter().any(|f| *f);
            let (span, start_at, end_at, user_at, ids) = encode_span(
                shape,
                &shape.journeys[j],
                &shape.cohorts[c],
                &b,
                call_failed,
                rng,
            );
            // Offsets inside `ss` once the span is wrapped as field 2.
            let base = ss.len() + 1 + varint_len(span.len() as u64);
            put_msg(&mut ss, 2, &span);
            let parent = Stamp {
                start_at: (base + start_at) as u32,
                end_at: (base + end_at) as u32,
                duration_ns: b.sample_duration_ns(rng),
                age_ns: rng.below(50_000_000) as u64,
                user_at: user_at.map_or(NO_USER, |at| (base + at) as u32),
                cohort: c as u32,
                // The trace id is the span's first field: a tag and a length byte, then it.
                trace_at: (base + 2) as u32,
            };
            span_stamps.push(parent);
            // Calls one after another inside the request, each a share of its time.
            let share = parent.duration_ns / (deps as u64 + 1);
            for (d, failed) in failed_calls.iter().enumerate() {
                let (call, start_at, end_at) =
                    encode_call(&ids, DEPENDENCIES[d % DEPENDENCIES.len()], *failed, rng);
                let base = ss.len() + 1 + varint_len(call.len() as u64);
                put_msg(&mut ss, 2, &call);
                span_stamps.push(Stamp {
                    start_at: (base + start_at) as u32,
                    end_at: (base + end_at) as u32,
                    duration_ns: share,
                    age_ns: parent.age_ns + share * (deps - d) as u64 / 2,
                    user_at: NO_USER,
                    cohort: c as u32,
                    trace_at: (base + 2) as u32,
                });
            }
        }
        let ss_base = rs.len() + 1 + varint_len(ss.len() as u64);
        put_msg(&mut rs, 2, &ss);
        let rs_base = body.len() + 1 + varint_len(rs.len() as u64) + ss_base;
        put_msg(&mut body, 1, &rs);
        for s in span_stamps {
            stamps.push(Stamp {
                start_at: s.start_at + rs_base as u32,
                end_at: s.end_at + rs_base as u32,
                trace_at: s.trace_at + rs_base as u32,
                user_at: if s.user_at == NO_USER {
                    NO_USER
                } else {
                    s.user_at + rs_base as u32
                },
                ..s
            });
        }
    }
    Template {
        body,
        spans: stamps.len(),
        stamps,
        text: false,
    }
}

/// The trace id and span id of a request, which its calls take as trace and parent.
type Ids = ([u8; 16], [u8; 8]);

/// A CLIENT call of the request with trace and span ids `ids` to `dependency`.
fn encode_call(
    ids: &Ids,
    dependency: &str,
    failed: bool,
    rng: &mut Rng,
) -> (Vec<u8>, usize, usize) {
    let mut s = Vec::with_capacity(128);
    put_bytes(&mut s, 1, &ids.0);
    let mut sid = [0u8; 8];
    rng.fill_nonzero(&mut sid);
    put_bytes(&mut s, 2, &sid);
    put_bytes(&mut s, 4, &ids.1);
    put_str(&mut s, 5, &format!("call {dependency}"));
    put_varint_field(&mut s, 6, 3); // SPAN_KIND_CLIENT
    let start_at = put_fixed64(&mut s, 7, 0);
    let end_at = put_fixed64(&mut s, 8, 0);
    put_msg(&mut s, 9, &kv_str("peer.service", dependency));
    if failed {
        let mut st = Vec::new();
        put_varint_field(&mut st, 3, 2); // STATUS_CODE_ERROR
        put_msg(&mut s, 15, &st);
    }
    (s, start_at, end_at)
}

/// A SERVER span; `forced_error` fails it whatever the error rate (a failed call).
/// Returns the span, its timestamps' offsets, its user id's digits' offset and its
/// trace and span ids.
fn encode_span(
    shape: &Shape<'_>,
    j: &JourneySpec,
    c: &CohortSpec,
    b: &Behaviour,
    forced_error: bool,
    rng: &mut Rng,
) -> (Vec<u8>, usize, usize, Option<usize>, Ids) {
    let mut s = Vec::with_capacity(480);
    let mut id = [0u8; 16];
    rng.fill_nonzero(&mut id);
    put_bytes(&mut s, 1, &id);
    let mut sid = [0u8; 8];
    rng.fill_nonzero(&mut sid);
    put_bytes(&mut s, 2, &sid);
    let own = sid;
    rng.fill_nonzero(&mut sid);
    put_bytes(&mut s, 4, &sid);
    let path;
    let route_path = if j.route.contains("{id}") {
        path = j
            .route
            .replace("{id}", &(10_000 + rng.below(90_000)).to_string());
        path.as_str()
    } else {
        j.route.as_str()
    };
    let name = format!("{} {}", j.method, j.route);
    put_str(&mut s, 5, &name);
    put_varint_field(&mut s, 6, 2); // SPAN_KIND_SERVER
    let start_at = put_fixed64(&mut s, 7, 0);
    let end_at = put_fixed64(&mut s, 8, 0);
    let error = rng.chance(b.error_rate) || forced_error;
    let code: i64 = if error {
        [500, 502, 503][rng.below(3)]
    } else {
        200
    };
    for kv in [
        kv_str("http.request.method", j.method),
        kv_str("http.route", &j.route),
        kv_int("http.response.status_code", code),
        kv_str("url.path", route_path),
        kv_str("url.scheme", "https"),
        kv_str("server.address", "shop.example.com"),
        kv_int("server.port", 443),
        kv_str("network.protocol.version", "2"),
        kv_str("user_agent.original", UA),
        kv_str("app.plan.tier", &c.tier),
    ] {
        put_msg(&mut s, 9, &kv);
    }
    let mut user_at = None;
    if shape.users {
        let kv = kv_str("enduser.id", USER_PLACEHOLDER);
        let at = s.len() + 1 + varint_len(kv.len() as u64) + (kv.len() - USER_DIGITS);
        put_msg(&mut s, 9, &kv);
        user_at = Some(at);
    }
    if shape.order_value {
        let eur = (40.0 * (0.8 * rng.normal()).exp() * 100.0).round() / 100.0;
        put_msg(&mut s, 9, &kv_double("app.order.value", eur));
    }
    if error {
        let mut st = Vec::new();
        put_varint_field(&mut st, 3, 2); // STATUS_CODE_ERROR
        put_msg(&mut s, 15, &st);
    }
    // flags: W3C sampled, parent is remote.
    put_key(&mut s, 16, 5);
    s.extend_from_slice(&0x0000_0301u32.to_le_bytes());
    (s, start_at, end_at, user_at, (id, own))
}

fn kv_str(k: &str, v: &str) -> Vec<u8> {
    let mut any = Vec::with_capacity(v.len() + 2);
    put_str(&mut any, 1, v);
    let mut kv = Vec::with_capacity(k.len() + any.len() + 6);
    put_str(&mut kv, 1, k);
    put_msg(&mut kv, 2, &any);
    kv
}

fn kv_double(k: &str, v: f64) -> Vec<u8> {
    let mut any = Vec::with_capacity(9);
    put_key(&mut any, 4, 1); // AnyValue.double_value, fixed64
    any.extend_from_slice(&v.to_le_bytes());
    let mut kv = Vec::with_capacity(k.len() + any.len() + 6);
    put_str(&mut kv, 1, k);
    put_msg(&mut kv, 2, &any);
    kv
}

fn kv_int(k: &str, v: i64) -> Vec<u8> {
    let mut any = Vec::with_capacity(11);
    put_varint_field(&mut any, 3, v as u64);
    let mut kv = Vec::with_capacity(k.len() + any.len() + 6);
    put_str(&mut kv, 1, k);
    put_msg(&mut kv, 2, &any);
    kv
}

pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wt: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wt));
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_key(out, tag, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, tag: u32, s: &str) {
    put_bytes(out, tag, s.as_bytes());
}

fn put_msg(out: &mut Vec<u8>, tag: u32, m: &[u8]) {
    put_bytes(out, tag, m);
}

fn put_varint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    put_key(out, tag, 0);
    put_varint(out, v);
}

/// Writes a fixed64 field and returns the offset of its value.
fn put_fixed64(out: &mut Vec<u8>, tag: u32, v: u64) -> usize {
    put_key(out, tag, 1);
    let at = out.len();
    out.extend_from_slice(&v.to_le_bytes());
    at
}

/// A request with one span whose `cloud.region` is `region`, for the freshness probe.
pub fn probe(
    journey: &JourneySpec,
    region: &str,
    tier: &str,
    version: &str,
    rng: &mut Rng,
) -> Template {
    let js = std::slice::from_ref(journey);
    let cs = [CohortSpec {
        region: region.into(),
        tier: tier.into(),
    }];
    let behave = |_: usize, _: usize| Behaviour {
        error_rate: 0.0,
        latency_ms: 1.0,
        spread: 0.0,
        dependency_fault: None,
    };
    build(
        &Shape {
            journeys: js,
            cohorts: &cs,
            behaviour: &behave,
            users: false,
            order_value: false,
            dependencies: 0,
            version,
        },
        1,
        rng,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{AttrValue, SpanView};

    #[test]
    fn templates_decode_and_stamp_in_place() {
        let js = journeys(3);
        let cs = cohorts(6);
        let behave = |_: usize, _: usize| Behaviour {
            error_rate: 0.5,
            latency_ms: 100.0,
            spread: 0.5,
            dependency_fault: None,
        };
        let mut rng = Rng::new(7);
        let t = build(
            &Shape {
                journeys: &js,
                cohorts: &cs,
                behaviour: &behave,
                users: false,
                order_value: false,
                dependencies: 0,
                version: DEFAULT_VERSION,
            },
            1000,
            &mut rng,
        );
        let mut body = t.body.clone();
        let now = 1_800_000_000_000_000_000u64;
        t.stamp(&mut body, now);
        let per_span = body.len() as f64 / 1000.0;
        assert!(
            (380.0..480.0).contains(&per_span),
            "{per_span} bytes per span"
        );
        let req = crate::decode::lazy::decode_traces(&body).expect("a valid request");
        assert_eq!(req.span_count(), 1000);
        let mut errors = 0;
        for s in req.spans() {
            assert_eq!(s.invalid_reason(), None);
            assert!(s.end_ns() <= now && now - s.end_ns() < 50_000_000);
            assert!(s.start_ns() < s.end_ns());
            assert_eq!(s.kind(), 2);
            assert!(js
                .iter()
                .any(|j| s.name() == format!("{} {}", j.method, j.route)));
            assert!(matches!(s.attr("cloud.region"), Some(AttrValue::Str(_))));
            assert!(matches!(s.attr("app.plan.tier"), Some(AttrValue::Str(_))));
            assert_eq!(s.span_attrs().len(), 10);
            assert_eq!(s.resource_attrs().len(), 7);
            errors += usize::from(s.status_code() == 2);
        }
        assert!(
            (350..650).contains(&errors),
            "{errors} errors of 1000 at 50%"
        );
        // And prost reads the same thing.
        use prost::Message;
        let p =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &body[..],
            )
            .expect("prost decodes it");
        assert_eq!(crate::decode::span_count(&p), 1000);
    }

    #[test]
    fn renewed_traces_take_the_generation_and_keep_their_children() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let (js, cs) = (journeys(2), cohorts(3));
        let behave = |_: usize, _: usize| Behaviour {
            error_rate: 0.0,
            latency_ms: 10.0,
            spread: 0.0,
            dependency_fault: None,
        };
        let shape = Shape {
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            users: false,
            order_value: false,
            dependencies: 3,
            version: DEFAULT_VERSION,
        };
        // 40 spans: 10 traces of a SERVER span and 3 calls.
        let t = build(&shape, 40, &mut Rng::new(5));
        let traces = |body: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            let req = ExportTraceServiceRequest::decode(body).expect("decodes");
            req.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| (s.trace_id.clone(), s.span_id.clone()))
                .collect()
        };
        let before = traces(&t.body);
        let mut body = t.body.clone();
        t.renew_traces(&mut body, 0x0102_0304_0506_0708);
        let after = traces(&body);
        assert_eq!(after.len(), 40);
        for ((b, bs), (a, s)) in before.iter().zip(&after) {
            assert_eq!(&a[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
            assert_eq!(&a[8..], &b[8..], "the random half stays");
            assert_eq!(bs, s, "span ids stay");
        }
        let mut distinct: Vec<_> = after.iter().map(|(t, _)| t.clone()).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), 10, "a trace's 4 spans still share one id");
        // JSON: the same ids, as hex.
        let j = t.to_json().expect("converts");
        let mut text = j.body.clone();
        j.renew_traces(&mut text, 0x0102_0304_0506_0708);
        let text = String::from_utf8(text).expect("utf-8");
        let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for (a, _) in &after {
            assert!(text.contains(&format!("\"traceId\":\"{}\"", hex(a))));
        }
    }

    #[test]
    fn json_templates_read_as_the_protobuf_ones_and_stamp_in_place() {
        let (js, cs) = (journeys(3), cohorts(6));
        let behave = |_: usize, _: usize| Behaviour {
            error_rate: 0.5,
            latency_ms: 100.0,
            spread: 0.5,
            dependency_fault: None,
        };
        let shape = Shape {
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            users: false,
            order_value: false,
            dependencies: 0,
            version: DEFAULT_VERSION,
        };
        let t = build(&shape, 1000, &mut Rng::new(7));
        let j = t.to_json().expect("converts");
        let now = 1_800_000_000_000_000_000u64;
        let (mut pb, mut text) = (t.body.clone(), j.body.clone());
        t.stamp(&mut pb, now);
        j.stamp(&mut text, now);
        let per_span = text.len() as f64 / 1000.0;
        assert!(
            (1000.0..1060.0).contains(&per_span),
            "{per_span} bytes per span"
        );
        let a = crate::decode::lazy::decode_traces(&pb).expect("valid protobuf");
        let arena = crate::decode::json::Bump::new();
        let b = crate::decode::json::decode_traces(&text, &arena).expect("valid JSON");
        assert_eq!(b.span_count(), 1000);
        for (x, y) in a.spans().zip(b.spans()) {
            assert_eq!((x.start_ns(), x.end_ns()), (y.start_ns(), y.end_ns()));
            assert_eq!((x.trace_id(), x.span_id()), (y.trace_id(), y.span_id()));
            assert_eq!(
                (x.name(), x.kind(), x.status_code()),
                (y.name(), y.kind(), y.status_code())
            );
            assert_eq!(x.span_attrs(), y.span_attrs());
            assert_eq!(x.resource_attrs(), y.resource_attrs());
        }
        assert!(
            !text.windows(4).any(|w| w == b"null"),
            "no nulls, as SDKs send none"
        );
    }

    #[test]
    fn spans_name_a_user_of_their_cohort_and_carry_an_order_value() {
        let (js, cs) = (journeys(2), cohorts(6));
        let behave = |_: usize, _: usize| Behaviour {
            error_rate: 0.0,
            latency_ms: 100.0,
            spread: 0.0,
            dependency_fault: None,
        };
        let shape = Shape {
            dependencies: 0,
            version: DEFAULT_VERSION,
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            users: true,
            order_value: true,
        };
        let t = build(&shape, 200, &mut Rng::new(3));
        let j = t.to_json().expect("converts");
        // One user per cohort: user k x 6 + c with k always 0 is the cohort's index.
        let pool = UserPool::new(6, 6);
        assert_eq!((pool.per_cohort, pool.distinct()), (1, 6));
        let cohort_of = |s: &dyn SpanView| {
            let region = s.attr("cloud.region");
            let tier = s.attr("app.plan.tier");
            cs.iter()
                .position(|c| {
                    region == Some(AttrValue::Str(&c.region))
                        && tier == Some(AttrValue::Str(&c.tier))
                })
                .expect("a generated cohort")
        };
        let (mut pb, mut text) = (t.body.clone(), j.body.clone());
        t.draw_users(&mut pb, &pool, &mut Rng::new(1));
        j.draw_users(&mut text, &pool, &mut Rng::new(1));
        let a = crate::decode::lazy::decode_traces(&pb).expect("valid protobuf");
        let arena = crate::decode::json::Bump::new();
        let b = crate::decode::json::decode_traces(&text, &arena).expect("valid JSON");
        let mut n = 0;
        for (x, y) in a.spans().zip(b.spans()) {
            let want = format!("u{:010}", cohort_of(&x));
            assert_eq!(x.attr("enduser.id"), Some(AttrValue::Str(&want)));
            assert_eq!(y.attr("enduser.id"), Some(AttrValue::Str(&want)));
            let v = x.attr("app.order.value").and_then(|v| v.as_f64());
            assert!(v.is_some_and(|v| v > 0.0), "{v:?}");
            assert_eq!(v, y.attr("app.order.value").and_then(|v| v.as_f64()));
            n += 1;
        }
        assert_eq!(n, 200);
        // 1,000 users in 6 cohorts: 166 per cohort, user k x 6 + c for k < 166, so
        // every drawn id is below 996 and names its span's cohort.
        let pool = UserPool::new(1_000, 6);
        assert_eq!(pool.distinct(), 996);
        t.draw_users(&mut pb, &pool, &mut Rng::new(2));
        let a = crate::decode::lazy::decode_traces(&pb).expect("valid protobuf");
        for x in a.spans() {
            let Some(AttrValue::Str(id)) = x.attr("enduser.id") else {
                panic!("no user id");
            };
            let u: u64 = id[1..].parse().expect("digits");
            assert!(u < 996 && u % 6 == cohort_of(&x) as u64, "{id}");
        }
    }

    #[test]
    fn dependencies_are_client_children_and_a_failed_call_fails_its_request() {
        // 30 spans: 10 requests of 1 SERVER + 2 CLIENT spans, the call to payments failed.
        calls_of(2, 30, 10, 1);
        // 40 spans: 2 requests (traces) of 20 spans; the 19 calls go round the 8
        // dependencies, so payments is called 3 times (calls 0, 8 and 16), all failed.
        calls_of(19, 40, 2, 3);
    }

    fn calls_of(dependencies: usize, n: usize, requests: usize, failed_calls: usize) {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let js = journeys(1);
        let cs = cohorts(1);
        // payments fails every call; inventory never does.
        let behave = |_: usize, _: usize| Behaviour {
            error_rate: 0.0,
            latency_ms: 10.0,
            spread: 0.0,
            dependency_fault: Some((0, 1.0)),
        };
        let shape = Shape {
            dependencies,
            journeys: &js,
            cohorts: &cs,
            behaviour: &behave,
            users: false,
            order_value: false,
            version: DEFAULT_VERSION,
        };
        let t = build(&shape, n, &mut Rng::new(3));
        assert_eq!(t.spans, n);
        let req = ExportTraceServiceRequest::decode(&t.body[..]).unwrap();
        let spans: Vec<_> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let servers: Vec<_> = spans.iter().filter(|s| s.kind == 2).collect();
        assert_eq!(servers.len(), requests);
        for server in servers {
            assert_eq!(
                server.status.as_ref().map(|s| s.code),
                Some(2),
                "failed by its call"
            );
            let calls: Vec<_> = spans
                .iter()
                .filter(|s| s.parent_span_id == server.span_id)
                .collect();
            assert_eq!(calls.len(), dependencies);
            let mut failed_seen = 0;
            for call in calls {
                assert_eq!(call.kind, 3);
                assert_eq!(call.trace_id, server.trace_id);
                let peer = &call.attributes[0];
                assert_eq!(peer.key, "peer.service");
                let name = match peer.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => s.clone(),
                    other => panic!("peer.service is a string, got {other:?}"),
                };
                let failed = call.status.as_ref().map(|s| s.code) == Some(2);
                assert_eq!(failed, name == "payments", "{name}");
                failed_seen += usize::from(failed);
            }
            assert_eq!(failed_seen, failed_calls);
        }
    }

    #[test]
    fn cohorts_spread_regions_first() {
        let c = cohorts(50);
        assert_eq!(c.len(), 50);
        assert_eq!(c[0].region, "us-east-1");
        assert_eq!(c[1].region, "eu-west-1");
        assert_eq!(c[10].tier, "pro");
        let mut combos: Vec<_> = c
            .iter()
            .map(|c| (c.region.clone(), c.tier.clone()))
            .collect();
        combos.sort();
        combos.dedup();
        assert_eq!(combos.len(), 50);
    }
}
