//! Listener settings shared by the receivers' and exporters' configs: an endpoint
//! that must resolve, and TLS files that must exist.

use super::decode::{join, Ctx};
use super::yaml::Node;
use std::net::SocketAddr;

/// PEM files for a TLS listener; with `client_ca_file`, clients must present a
/// certificate signed by that CA (mutual TLS).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub client_ca_file: Option<std::path::PathBuf>,
}

/// `{endpoint: host:port, tls: {...}}`, plus the `extra` keys a listener of one kind
/// has (its component reads them with [`extra_key`]).
pub fn listener(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    extra: &[&str],
) -> (Option<SocketAddr>, Option<TlsFiles>) {
    let keys: Vec<&str> = ["endpoint", "tls"].iter().chain(extra).copied().collect();
    let Some(m) = ctx.map(node, path, &keys) else {
        return (None, None);
    };
    let tls = m
        .get("tls")
        .and_then(|t| tls_files(ctx, t, &join(path, "tls")));
    let p = join(path, "endpoint");
    let Some(e) = m.get("endpoint") else {
        ctx.error(m.mark, path, "missing required key \"endpoint\"");
        return (None, tls);
    };
    let Some(s) = ctx.string(e, &p) else {
        return (None, tls);
    };
    match resolve_addr(&s) {
        Some(a) => (Some(a), tls),
        None => {
            ctx.error(
                e.mark,
                &p,
                format!("invalid endpoint \"{s}\" (expected host:port, e.g. 127.0.0.1:4317)"),
            );
            (None, tls)
        }
    }
}

/// The value of `key` in a listener's mapping, if it is a mapping that has it; the
/// listener's own walk reports what is wrong with the mapping itself.
pub fn extra_key<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        super::yaml::Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, super::yaml::Kind::Scalar(s, _) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// A PEM file that must exist when the config is loaded.
pub fn existing_file(ctx: &mut Ctx, node: &Node, path: &str) -> Option<std::path::PathBuf> {
    let s = ctx.non_empty_string(node, path)?;
    let p = std::path::PathBuf::from(&s);
    if !p.is_file() {
        ctx.error(
            node.mark,
            path,
            format!("file \"{s}\" does not exist or is not a file"),
        );
        return None;
    }
    Some(p)
}

pub fn tls_files(ctx: &mut Ctx, node: &Node, path: &str) -> Option<TlsFiles> {
    let m = ctx.map(node, path, &["cert_file", "key_file", "client_ca_file"])?;
    let mut need = |key: &str| match m.get(key) {
        Some(n) => existing_file(ctx, n, &join(path, key)),
        None => {
            ctx.error(m.mark, path, format!("missing required key \"{key}\""));
            None
        }
    };
    let cert_file = need("cert_file");
    let key_file = need("key_file");
    let client_ca_file = match m.get("client_ca_file") {
        Some(n) => Some(existing_file(ctx, n, &join(path, "client_ca_file"))?),
        None => None,
    };
    Some(TlsFiles {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
    })
}

pub fn resolve_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()?
        .next()
}
