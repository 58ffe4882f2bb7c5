//! The whole ingest step a receiver runs for a request body: `Ingest::traces_body`
//! (lazy protobuf decoder or JSON), span validation, journey matching with rules and
//! cohorts, and queueing to running pipeline workers; plus the metrics and logs
//! bodies. The first input byte picks the signal and the format, the rest is the body.
//!
//! Checked: no panic; a body is refused as malformed exactly when its decoder rejects
//! it; an accepted traces body counts every span as received, and never rejects more
//! spans than it holds.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use cerflow::config::Config;
use cerflow::decode::Format;
use cerflow::ingest::{Ingest, Refused};
use cerflow::journey::Journeys;
use cerflow::pipeline::Pipeline;
use cerflow::telemetry::{Telemetry, Transport};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const CONFIG: &str = r#"
cohorts:
  keys: [cloud.region, app.plan.tier]
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
    incorrect: { event: exception }
  - name: routed
    match: { attributes: [{ key: http.route, exists: true }] }
    failure: { attributes: [{ key: http.response.status_code, gte: 500 }] }
  - name: by-service
    match: { service: shop }
"#;

struct World {
    ingest: Ingest,
    tel: Arc<Telemetry>,
    _pipeline: Pipeline,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let cfg = Config::parse(CONFIG, "fuzz.yaml", &|_| None).expect("the fuzz config is valid");
        let tel = Arc::new(Telemetry::default());
        let journeys = Arc::new(Journeys::new(&cfg));
        let pipeline = Pipeline::start(&cfg, journeys.clone(), tel.clone());
        let ingest = Ingest::new(&cfg, journeys, pipeline.input(), tel.clone());
        World {
            ingest,
            tel,
            _pipeline: pipeline,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let format = if selector & 1 == 0 {
        Format::Protobuf
    } else {
        Format::Json
    };
    let t = Transport::Http;
    match (selector >> 1) % 3 {
        0 => {
            let expected = match format {
                Format::Protobuf => oracle::check_protobuf(body).unwrap_or_else(|e| panic!("{e}")),
                Format::Json => oracle::check_json(body).unwrap_or_else(|e| panic!("{e}")),
            };
            let before = w.tel.received_spans(t);
            let got = w.ingest.traces_body(body, format, t);
            let received = w.tel.received_spans(t) - before;
            match (expected, got) {
                (oracle::Outcome::Rejected, Err(Refused::Malformed(_))) => assert_eq!(received, 0),
                (oracle::Outcome::Accepted { spans }, Ok(a)) => {
                    assert_eq!(received, spans as u64, "every span counted as received");
                    assert!(
                        a.rejected <= spans as u64,
                        "{} of {spans} rejected",
                        a.rejected
                    );
                    assert_eq!(a.rejected > 0, !a.message.is_empty(), "{a:?}");
                }
                (oracle::Outcome::Accepted { .. }, Err(Refused::Unavailable)) => {}
                (e, g) => panic!("decoders say {e:?}, ingest answered {g:?}"),
            }
        }
        1 => {
            let _ = w.ingest.metrics_body(body, format, t);
        }
        _ => {
            let _ = w.ingest.logs_body(body, format, t);
        }
    }
});
