//! Who may send: bearer tokens with tenants, TLS and mutual TLS on every listener,
//! through the real binary with certificates made for the test.

mod common;

use common::otlp::{checkout_spans, traces};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::Path;
use std::time::{Duration, Instant};

/// `n` checkout spans of 10 ms from `shop-api`.
fn request(n: usize) -> ExportTraceServiceRequest {
    traces("shop-api", checkout_spans(n, 0, 10))
}

const CHECKOUT: &str = "pipeline:\n  evaluation_interval: 100ms\njourneys:\n  - name: checkout\n    match: { span_name: POST /checkout }\n";

#[test]
fn bearer_tokens_guard_both_receivers_and_name_the_tenant() {
    let cf = Cerflow::start(|p| {
        with_otlp_receiver_settings(
            &p.listeners_yaml(""),
            "    auth:\n      bearer_tokens:\n        - { token: s3cret, tenant: shop }\n        - { token: n0tenant }\n",
        ) + "cohorts:\n  keys: [cerflow.tenant]\n" + CHECKOUT
    });
    let post = |auth: Option<&str>, n: usize| {
        let mut r = cf
            .client()
            .post(cf.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(request(n).encode_to_vec());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().unwrap()
    };
    let r = post(None, 3);
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(post(Some("Bearer wrong"), 2).status().as_u16(), 401);
    assert_eq!(post(Some("Basic s3cret"), 1).status().as_u16(), 401);
    assert_eq!(post(Some("Bearer s3cret"), 4).status().as_u16(), 200);
    assert_eq!(post(Some("Bearer n0tenant"), 5).status().as_u16(), 200);

    let rt = runtime();
    let endpoint = cf.grpc_endpoint();
    rt.block_on(async move {
        let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
        let err = client.export(request(6)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        let mut req = tonic::Request::new(request(7));
        req.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        client.export(req).await.unwrap();
    });

    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cerflow_tenant", "shop")],
        11.0,
    );
    // A token without a tenant leaves the attribute unset: the cohort's missing value.
    s.assert(
        "cer_journey_requests_total",
        &[("journey", "checkout"), ("cerflow_tenant", "unknown")],
        5.0,
    );
    // 3 + 2 + 1 spans over HTTP and 6 over gRPC were turned away, in 4 requests.
    s.assert(
        "cerflow_refused_spans_total",
        &[("reason", "unauthenticated")],
        12.0,
    );
    s.assert(
        "cerflow_refused_requests_total",
        &[("reason", "unauthenticated")],
        4.0,
    );
    // Refused spans were received too: received = processed + refused.
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        15.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "grpc")],
        13.0,
    );
    let s = cf.wait_for("cerflow_processed_spans_total", &[], 16.0);
    assert_eq!(
        s.sum("cerflow_received_spans_total", &[]),
        16.0 + s.sum("cerflow_refused_spans_total", &[])
    );
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(
            vec!["client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        // A second, unrelated CA and a client certificate it signed: not trusted by cerflow.
        let other_key = KeyPair::generate().unwrap();
        let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = other_params.self_signed(&other_key).unwrap();
        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue = CertificateParams::new(vec!["rogue".to_string()]).unwrap();
        rogue.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let rogue = rogue.signed_by(&rogue_key, &other, &other_key).unwrap();
        std::fs::write(dir.path().join("rogue.crt"), rogue.pem()).unwrap();
        std::fs::write(dir.path().join("rogue.key"), rogue_key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    fn tls_yaml(&self, indent: &str) -> String {
        format!(
            "{indent}tls:\n{indent}  cert_file: {}\n{indent}  key_file: {}\n{indent}  client_ca_file: {}\n",
            self.path("server.crt"),
            self.path("server.key"),
            self.path("ca.crt")
        )
    }

    fn https_client(&self, identity: Option<&str>) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(5))
            .add_root_certificate(reqwest::Certificate::from_pem(&self.read("ca.crt")).unwrap());
        if let Some(name) = identity {
            let mut pem = self.read(&format!("{name}.crt"));
            pem.extend_from_slice(&self.read(&format!("{name}.key")));
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

fn with_tls(yaml: String, pki: &Pki, listeners: &[&str]) -> String {
    let mut out = yaml;
    for l in listeners {
        let (needle, indent) = match *l {
            "grpc" => ("      grpc:\n", "        "),
            "http" => ("      http:\n", "        "),
            _ => ("  prometheus:\n", "    "),
        };
        out = out.replacen(needle, &format!("{needle}{}", pki.tls_yaml(indent)), 1);
    }
    out
}

#[test]
fn mutual_tls_on_the_receivers_refuses_clients_without_a_trusted_certificate() {
    let pki = Pki::new();
    let cf = Cerflow::start(|p| with_tls(p.listeners_yaml(""), &pki, &["grpc", "http"]) + CHECKOUT);
    let url = format!("https://127.0.0.1:{}/v1/traces", cf.ports.http);
    let post = |c: &reqwest::blocking::Client| {
        c.post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request(2).encode_to_vec())
            .send()
    };
    assert_eq!(
        post(&pki.https_client(Some("client")))
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(
        post(&pki.https_client(None)).is_err(),
        "no client certificate: refused in the handshake"
    );
    assert!(
        post(&pki.https_client(Some("rogue"))).is_err(),
        "a certificate from another CA: refused"
    );
    // Plain HTTP on the TLS port gets nowhere either.
    assert!(cf
        .client()
        .post(cf.http_url("/v1/traces"))
        .body(request(1).encode_to_vec())
        .send()
        .is_err());

    let rt = runtime();
    let port = cf.ports.grpc;
    let (ca, cert, key, rogue_cert, rogue_key) = (
        pki.read("ca.crt"),
        pki.read("client.crt"),
        pki.read("client.key"),
        pki.read("rogue.crt"),
        pki.read("rogue.key"),
    );
    rt.block_on(async move {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        let connect = |identity: Option<(Vec<u8>, Vec<u8>)>| {
            let ca = ca.clone();
            async move {
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("localhost");
                if let Some((c, k)) = identity {
                    tls = tls.identity(Identity::from_pem(c, k));
                }
                let ch = Channel::from_shared(format!("https://127.0.0.1:{port}"))
                    .unwrap()
                    .tls_config(tls)
                    .unwrap();
                match ch.connect().await {
                    Ok(ch) => TraceServiceClient::new(ch)
                        .export(request(3))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        connect(Some((cert, key)))
            .await
            .expect("a trusted client certificate is accepted");
        assert!(
            connect(None).await.is_err(),
            "no client certificate: refused"
        );
        assert!(
            connect(Some((rogue_cert, rogue_key))).await.is_err(),
            "an untrusted certificate: refused"
        );
    });
    let s = cf.wait_for(
        "cer_journey_requests_total",
        &[("journey", "checkout")],
        5.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "grpc")],
        3.0,
    );
    s.assert(
        "cerflow_received_spans_total",
        &[("transport", "http")],
        2.0,
    );
}

/// Starts cerflow with TLS on its metrics port too, so readiness is polled over HTTPS.
fn start_all_tls(pki: &Pki, dir: &Path) -> (std::process::Child, Ports) {
    let ports = Ports::new();
    let yaml = with_tls(
        ports.listeners_yaml(""),
        pki,
        &["grpc", "http", "prometheus"],
    ) + CHECKOUT;
    let path = dir.join("cerflow.yaml");
    std::fs::write(&path, yaml).unwrap();
    let child = std::process::Command::new(BIN)
        .current_dir(dir)
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    (child, ports)
}

#[test]
fn the_metrics_endpoint_serves_tls_and_readiness() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ports) = start_all_tls(&pki, dir.path());
    let client = pki.https_client(Some("client"));
    let base = format!("https://127.0.0.1:{}", ports.prom);
    let deadline = Instant::now() + DEADLINE;
    let ready = loop {
        match client.get(format!("{base}/readyz")).send() {
            Ok(r) if r.status().is_success() => break r.text().unwrap(),
            _ if Instant::now() > deadline => {
                let _ = stop(&mut child, Duration::from_secs(5));
                panic!(
                    "no HTTPS readiness: {}",
                    std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
                );
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(ready, "ready\n");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("cerflow_build_info"), "{metrics}");
    // The web view shares the listener and its TLS: the page and its live stream.
    let page = client.get(format!("{base}/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("<title>cerflow</title>"));
    let mut stream =
        common::sse::SseReader::new(client.get(format!("{base}/api/v1/stream")).send().unwrap());
    assert_eq!(stream.next_json()["kind"], "overview");
    assert!(
        pki.https_client(None)
            .get(format!("{base}/metrics"))
            .send()
            .is_err(),
        "mTLS on the metrics port too"
    );
    // Shutdown ends the open stream rather than waiting for it.
    let status = stop(&mut child, Duration::from_secs(15));
    assert!(
        status.success(),
        "SIGTERM exits 0 with a stream open: {status}"
    );
    drop(stream);
}
