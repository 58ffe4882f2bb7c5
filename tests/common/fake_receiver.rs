//! A downstream OTLP metrics receiver for cerflow's push: the official generated tonic
//! `MetricsService` on a loopback port, recording every push and answering each the way
//! the test says (accept, refuse, or ask for a retry with `google.rpc.RetryInfo`).

use super::process::DEADLINE;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers a push.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Accept,
    /// An error without details.
    Refuse(tonic::Code),
    /// An error carrying `google.rpc.RetryInfo` with this delay.
    RetryAfter(tonic::Code, Duration),
}

/// One push that reached the receiver.
#[derive(Clone)]
pub struct Arrival {
    pub at: Instant,
    pub req: ExportMetricsServiceRequest,
    pub accepted: bool,
}

/// What the receiver was sent, and how it answers.
#[derive(Clone)]
pub struct Collector {
    answer: Arc<Mutex<Answer>>,
    got: Arc<Mutex<Vec<Arrival>>>,
}

impl Collector {
    pub fn new(answer: Answer) -> Collector {
        Collector {
            answer: Arc::new(Mutex::new(answer)),
            got: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn answer_with(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    pub fn all(&self) -> Vec<Arrival> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits until `ok` holds for the arrivals so far.
    #[track_caller]
    pub fn wait_until(&self, what: &str, ok: impl Fn(&[Arrival]) -> bool) -> Vec<Arrival> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let all = self.all();
            if ok(&all) {
                return all;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; {} pushes arrived ({} accepted)",
                    all.len(),
                    all.iter().filter(|a| a.accepted).count()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for a push that satisfies `ok` and returns the latest such push.
    #[track_caller]
    pub fn wait_for(
        &self,
        what: &str,
        ok: impl Fn(&ExportMetricsServiceRequest) -> bool,
    ) -> ExportMetricsServiceRequest {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(a) = self.all().into_iter().rev().find(|a| ok(&a.req)) {
                return a.req;
            }
            if Instant::now() > deadline {
                let last = self
                    .all()
                    .pop()
                    .map(|a| format!("{:#?}", a.req))
                    .unwrap_or_else(|| "nothing".into());
                panic!("no OTLP push with {what} within {DEADLINE:?}; received {} requests, the last:\n{last}", self.count());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `google.rpc.Status` with `RetryInfo`, as a server puts them in `grpc-status-details-bin`.
fn retry_info_status(code: tonic::Code, delay: Duration) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        code,
        "the test receiver is throttling",
        ErrorDetails::with_retry_info(Some(delay)),
    )
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let answer = *self.answer.lock().unwrap();
        let accepted = matches!(answer, Answer::Accept);
        self.got.lock().unwrap().push(Arrival {
            at: Instant::now(),
            req: request.into_inner(),
            accepted,
        });
        match answer {
            Answer::Accept => Ok(tonic::Response::new(ExportMetricsServiceResponse {
                partial_success: None,
            })),
            Answer::Refuse(code) => Err(tonic::Status::new(code, "refused by the test receiver")),
            Answer::RetryAfter(code, d) => Err(retry_info_status(code, d)),
        }
    }
}

/// A MetricsService served on 127.0.0.1:`port` until stopped or dropped.
pub struct Receiver {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Serves `collector` on `port` (0: a free one). A port just released may take a
    /// moment to bind again, so binding is retried for a few seconds.
    pub fn start(rt: &tokio::runtime::Runtime, collector: &Collector, port: u16) -> Receiver {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding 127.0.0.1:{port} again: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot bind the test receiver on 127.0.0.1:{port}: {e}"),
            }
        };
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = rx.await;
                },
            );
        let task = rt.spawn(async move {
            if let Err(e) = server.await {
                eprintln!("test OTLP receiver failed: {e}");
            }
        });
        Receiver {
            port,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it is gone: the port refuses connections.
    pub fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("the test receiver stops within 10s")
                    .expect("the test receiver task ends cleanly")
            });
        }
        let err = TcpStream::connect(("127.0.0.1", self.port))
            .expect_err("nothing listens on the receiver's port once it is stopped");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Attributes as `key -> string value` (other kinds in their debug form).
pub fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// Every metric of a pushed request, across resources and scopes.
pub fn metrics(req: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
}
