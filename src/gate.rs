//! `cerflow gate`: a release gate for CI/CD pipelines, reading the score API.
//!
//! Exit codes: 0 the gate passes, 1 it fails, 2 it cannot decide (cerflow unreachable,
//! or no data for the journey or a compared cohort).

use crate::deployments::Outcome;
use crate::score::{JourneyView, ScoreView};
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Base URL of cerflow's metrics port, where /api/v1/scores is served.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub endpoint: String,
    /// The journey to judge.
    #[arg(long)]
    pub journey: String,
    /// The score window, one of cerflow's windows (e.g. 5m).
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Fail when the journey's score is below this.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Fail while an alert of these severities is active on the journey (page, ticket).
    #[arg(long, value_delimiter = ',')]
    pub deny_alerts: Vec<String>,
    /// Compare two cohorts: KEY=CANARY:BASELINE, e.g. service.version=2.1.0:2.0.3; or
    /// KEY=auto (KEY being deployments.version_key): the journey's newest version with
    /// the one before it, over the same span, as its latest deployment measured them.
    #[arg(long)]
    pub compare: Option<String>,
    /// With --compare: fail when the canary's score is below the baseline's by more than this.
    #[arg(long, default_value_t = 0.02)]
    pub max_drop: f64,
    /// Keep checking until the gate passes or this long has passed (e.g. 10m).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// Time between checks while waiting.
    #[arg(long, value_parser = parse_wait, default_value = "10s")]
    pub interval: Duration,
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Undecided,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Undecided => 2,
        }
    }
}

/// One line of the table the gate prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub observed: String,
    pub required: String,
    pub verdict: Verdict,
}

/// One GET through hyper's client, which the binary links anyway, so the gate still
/// works from a bare CI image with only this binary. The gate is a short CLI command, so
/// the request gets a current-thread runtime of its own.
pub fn http_get(url: &str, timeout: Duration) -> Result<String, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL \"{url}\": {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// URLs are supported, got \"{url}\""));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(timeout, get(uri))
            .await
            .map_err(|_| format!("no answer from {url} within {timeout:?}"))?
    })
}

async fn get(uri: Uri) -> Result<String, String> {
    let host = uri.authority().map_or(String::new(), |a| a.to_string());
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(uri)
        .header(header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach {host}: {}", chain(&e)))?;
    let status = response.status();
    // The score snapshot is small; a hard cap keeps a wrong endpoint from filling memory.
    let body = Limited::new(response.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| format!("cannot read the response: {}", chain(e.as_ref())))?
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).map_err(|_| "response is not UTF-8")?;
    if status != StatusCode::OK {
        return Err(format!("HTTP {}: {}", status.as_u16(), text.trim()));
    }
    Ok(text)
}

/// An error with its causes: hyper's own message alone ("client error (Connect)") does
/// not say what went wrong.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn fetch(
    base: &str,
    journey: &str,
    window: &str,
    cohort: Option<(&str, &str)>,
) -> Result<ScoreView, String> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut url = format!(
        "{}/api/v1/scores?journey={}&window={}",
        base.trim_end_matches('/'),
        enc(journey),
        enc(window)
    );
    if let Some((k, v)) = cohort {
        url.push_str(&format!("&cohort={}", enc(&format!("{k}:{v}"))));
    }
    let body = http_get(&url, Duration::from_secs(10))?;
    serde_json::from_str(&body).map_err(|e| format!("unexpected response from {url}: {e}"))
}

fn score_of<'a>(
    v: &'a ScoreView,
    journey: &str,
    cohort_filter: bool,
) -> Option<(&'a JourneyView, Option<f64>)> {
    let j = v
        .journeys
        .iter()
        .find(|j| j.journey == journey && (cohort_filter || j.cohort.is_empty()))?;
    Some((j, j.windows.first().and_then(|w| w.score)))
}

fn fmt_score(s: Option<f64>) -> String {
    s.map_or("no data".into(), |v| format!("{v:.4}"))
}

/// Runs every check once.
pub fn evaluate(args: &Args) -> Vec<Check> {
    let mut checks = Vec::new();
    let view = match fetch(&args.endpoint, &args.journey, &args.window, None) {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check {
                name: "reach cerflow".into(),
                observed: e,
                required: "a score snapshot".into(),
                verdict: Verdict::Undecided,
            });
            return checks;
        }
    };
    let journey = score_of(&view, &args.journey, false);
    if let Some(min) = args.min_score {
        let observed = journey.and_then(|(_, s)| s);
        checks.push(Check {
            name: format!("score {} ({})", args.journey, args.window),
            observed: fmt_score(observed),
            required: format!(">= {min}"),
            verdict: match observed {
                None => Verdict::Undecided,
                Some(s) if s >= min => Verdict::Pass,
                Some(_) => Verdict::Fail,
            },
        });
    }
    if !args.deny_alerts.is_empty() {
        let active: Vec<String> = journey
            .map(|(j, _)| {
                j.alerts
                    .iter()
                    .filter(|a| args.deny_alerts.iter().any(|d| d == &a.severity))
                    .map(|a| format!("{}:{}", a.severity, a.sli))
                    .collect()
            })
            .unwrap_or_default();
        checks.push(Check {
            name: format!("alerts {}", args.journey),
            observed: if active.is_empty() {
                "none".into()
            } else {
                active.join(",")
            },
            required: format!("no {}", args.deny_alerts.join("/")),
            verdict: match (journey.is_some(), active.is_empty()) {
                (false, _) => Verdict::Undecided,
                (true, true) => Verdict::Pass,
                (true, false) => Verdict::Fail,
            },
        });
    }
    if let Some(spec) = &args.compare {
        checks.push(compare(args, spec));
    }
    if checks.is_empty() {
        checks.push(Check {
            name: "checks".into(),
            observed: "none given".into(),
            required: "--min-score, --deny-alerts or --compare".into(),
            verdict: Verdict::Undecided,
        });
    }
    checks
}

fn compare(args: &Args, spec: &str) -> Check {
    if let Some(key) = spec.strip_suffix("=auto") {
        return compare_auto(args, key);
    }
    let name = format!("canary vs baseline ({spec})");
    let parsed = spec
        .split_once('=')
        .and_then(|(k, v)| v.split_once(':').map(|(c, b)| (k, c, b)));
    let Some((key, canary, baseline)) = parsed else {
        return Check {
            name,
            observed: "bad --compare".into(),
            required: "KEY=CANARY:BASELINE".into(),
            verdict: Verdict::Undecided,
        };
    };
    let get = |value: &str| -> Result<Option<f64>, String> {
        let v = fetch(
            &args.endpoint,
            &args.journey,
            &args.window,
            Some((key, value)),
        )?;
        Ok(score_of(&v, &args.journey, true).and_then(|(_, s)| s))
    };
    match (get(canary), get(baseline)) {
        (Ok(Some(c)), Ok(Some(b))) => Check {
            name,
            observed: format!("{c:.4} vs {b:.4} (drop {:.4})", b - c),
            required: format!("drop <= {}", args.max_drop),
            verdict: if crate::deployments::regressed(c, b, args.max_drop) {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
        },
        (Err(e), _) | (_, Err(e)) => Check {
            name,
            observed: e,
            required: "both cohorts".into(),
            verdict: Verdict::Undecided,
        },
        (c, b) => Check {
            name,
            observed: format!(
                "canary {}, baseline {}",
                fmt_score(c.ok().flatten()),
                fmt_score(b.ok().flatten())
            ),
            required: "data for both cohorts".into(),
            verdict: Verdict::Undecided,
        },
    }
}

/// `--compare KEY=auto`: the journey's newest deployment (not superseded), judged here
/// with `--max-drop` on the figures cerflow measured for both versions over its span.
fn compare_auto(args: &Args, key: &str) -> Check {
    let mut check = Check {
        name: format!("newest version vs previous ({key})"),
        observed: String::new(),
        required: format!("drop <= {}", args.max_drop),
        verdict: Verdict::Undecided,
    };
    let url = format!("{}/api/v1/deployments", args.endpoint.trim_end_matches('/'));
    let list: Result<DeploymentList, String> =
        http_get(&url, Duration::from_secs(10)).and_then(|b| {
            serde_json::from_str(&b).map_err(|e| format!("unexpected response from {url}: {e}"))
        });
    let list = match list {
        Ok(l) => l,
        Err(e) => {
            check.observed = e;
            return check;
        }
    };
    // Before cerflow's first evaluation the list is empty and names no key yet: that is
    // "no deployment yet", not a key mismatch.
    if !list.version_key.is_empty() && list.version_key != key {
        check.observed = format!("cerflow reads versions from {}", list.version_key);
        check.required = format!("--compare {}=auto", list.version_key);
        return check;
    }
    let newest = list
        .deployments
        .iter()
        .filter(|d| d.journey == args.journey && d.result != Outcome::Superseded)
        .max_by_key(|d| d.start_unix_nano);
    let Some(d) = newest else {
        check.observed = format!("no deployment of {} yet", args.journey);
        check.required = "a deployment".into();
        return check;
    };
    check.name = format!("{} vs {} ({key})", d.version, d.previous_version);
    let (n, b) = (d.figures.score, d.previous_figures.score);
    match (d.result, n, b) {
        (Outcome::Pending, _, _) => {
            check.observed = format!(
                "pending: {} requests of the new version",
                crate::sampling::to_requests(d.figures.requests)
            );
            check.required = "a judged deployment (deployments.min_events)".into();
        }
        (_, Some(n), Some(b)) => {
            check.observed = format!("{n:.4} vs {b:.4} (drop {:.4})", b - n);
            check.verdict = if crate::deployments::regressed(n, b, args.max_drop) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
        }
        _ => {
            check.observed = format!("new {}, previous {}", fmt_score(n), fmt_score(b));
            check.required = "scores for both versions".into();
        }
    }
    check
}

#[derive(serde::Deserialize)]
struct DeploymentList {
    version_key: String,
    deployments: Vec<crate::deployments::Deployment>,
}

pub fn overall(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().any(|c| c.verdict == Verdict::Undecided) {
        Verdict::Undecided
    } else {
        Verdict::Pass
    }
}

pub fn table(checks: &[Check], verdict: Verdict) -> String {
    let w0 = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let w1 = checks
        .iter()
        .map(|c| c.observed.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w2 = checks
        .iter()
        .map(|c| c.required.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut s = format!(
        "{:w0$}  {:w1$}  {:w2$}  RESULT\n",
        "CHECK", "OBSERVED", "REQUIRED"
    );
    for c in checks {
        let r = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Undecided => "undecided",
        };
        s.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {r}\n",
            c.name, c.observed, c.required
        ));
    }
    s.push_str(match verdict {
        Verdict::Pass => "gate: PASS\n",
        Verdict::Fail => "gate: FAIL\n",
        Verdict::Undecided => "gate: UNDECIDED\n",
    });
    s
}

/// Runs the gate, waiting if asked, and returns the exit code.
pub fn run(args: &Args) -> u8 {
    let deadline = args.wait.map(|w| Instant::now() + w);
    loop {
        let checks = evaluate(args);
        let verdict = overall(&checks);
        let done =
            verdict == Verdict::Pass || deadline.is_none_or(|d| Instant::now() + args.interval > d);
        if done {
            print!("{}", table(&checks, verdict));
            return verdict.exit_code();
        }
        eprintln!(
            "gate: {verdict:?} so far; checking again in {:?}",
            args.interval
        );
        std::thread::sleep(args.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one canned HTTP response on a free port and returns the URL.
    fn serve_once(response: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v1/scores", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let _ = s.write_all(response);
        });
        url
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        );
        assert_eq!(http_get(&url, Duration::from_secs(5)).unwrap(), "Wikipedia");
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              ff\r\nshort\r\n",
        );
        assert!(http_get(&url, Duration::from_secs(5)).is_err());
    }

    #[test]
    fn an_error_status_is_an_error_with_its_body() {
        let url = serve_once(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\nConnection: close\r\n\r\n\
              unknown window\n",
        );
        assert_eq!(
            http_get(&url, Duration::from_secs(5)),
            Err("HTTP 400: unknown window".to_string())
        );
        assert_eq!(
            http_get("https://127.0.0.1:1/", Duration::from_secs(5)),
            Err("only http:// URLs are supported, got \"https://127.0.0.1:1/\"".to_string())
        );
    }

    #[test]
    fn a_silent_endpoint_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        // Accepted by the kernel's backlog, never answered.
        let err = http_get(&url, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err, format!("no answer from {url} within 200ms"));
        drop(l);
    }

    #[test]
    fn any_failure_fails_and_undecided_beats_pass() {
        let c = |v| Check {
            name: String::new(),
            observed: String::new(),
            required: String::new(),
            verdict: v,
        };
        assert_eq!(
            overall(&[c(Verdict::Pass), c(Verdict::Fail), c(Verdict::Undecided)]),
            Verdict::Fail
        );
        assert_eq!(
            overall(&[c(Verdict::Pass), c(Verdict::Undecided)]),
            Verdict::Undecided
        );
        assert_eq!(overall(&[c(Verdict::Pass)]), Verdict::Pass);
    }

    #[test]
    fn an_unreachable_endpoint_is_undecided() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let args = Args {
            endpoint: format!("http://127.0.0.1:{port}"),
            journey: "checkout".into(),
            window: "5m".into(),
            min_score: Some(0.9),
            deny_alerts: vec![],
            compare: None,
            max_drop: 0.02,
            wait: None,
            interval: Duration::from_secs(1),
        };
        let checks = evaluate(&args);
        assert_eq!(overall(&checks), Verdict::Undecided);
        assert_eq!(run(&args), 2);
    }
}
