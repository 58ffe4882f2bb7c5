//! The `ui` section: whether the live web view is served on the metrics port, how many
//! live streams it holds at once, and its optional authentication (bearer or basic),
//! decoded and validated here beside the web view.

use crate::config::decode::{join, Ctx};
use crate::config::listener::existing_file;
use crate::config::yaml::Node;

/// Most live streams the default allows; each holds a task and a formatted document.
pub const DEFAULT_MAX_STREAM_CLIENTS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Ui {
    pub enabled: bool,
    /// Server-sent event streams served at once; more are refused (503) and counted.
    pub max_stream_clients: usize,
    pub auth: Option<UiAuth>,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            enabled: true,
            max_stream_clients: DEFAULT_MAX_STREAM_CLIENTS,
            auth: None,
        }
    }
}

/// What a request to the web view must carry: the page shows business figures.
#[derive(Clone, PartialEq)]
pub enum UiAuth {
    Bearer { token: String },
    Basic { username: String, password: String },
}

impl std::fmt::Debug for UiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug dump.
        match self {
            UiAuth::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
            UiAuth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// `value` or the trimmed content of `file_key`'s file: exactly one of the two.
fn secret(
    ctx: &mut Ctx,
    m: &crate::config::decode::MapView,
    path: &str,
    key: &str,
) -> Option<String> {
    let file_key = format!("{key}_file");
    match (m.get(key), m.get(&file_key)) {
        (Some(v), None) => ctx.non_empty_string(v, &join(path, key)),
        (None, Some(f)) => {
            let p = join(path, &file_key);
            let file = existing_file(ctx, f, &p)?;
            match std::fs::read_to_string(&file) {
                Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                Ok(_) => {
                    ctx.error(f.mark, &p, "the file is empty");
                    None
                }
                Err(e) => {
                    ctx.error(f.mark, &p, format!("cannot read: {e}"));
                    None
                }
            }
        }
        _ => {
            ctx.error(
                m.mark,
                path,
                format!("give exactly one of: {key}, {file_key}"),
            );
            None
        }
    }
}

fn decode_auth(ctx: &mut Ctx, node: &Node) -> Option<UiAuth> {
    let path = "ui.auth";
    let m = ctx.map(node, path, &["bearer", "basic"])?;
    match (m.get("bearer"), m.get("basic")) {
        (Some(b), None) => {
            let p = join(path, "bearer");
            let b = ctx.map(b, &p, &["token", "token_file"])?;
            secret(ctx, &b, &p, "token").map(|token| UiAuth::Bearer { token })
        }
        (None, Some(b)) => {
            let p = join(path, "basic");
            let b = ctx.map(b, &p, &["username", "password", "password_file"])?;
            let username = match b.get("username") {
                Some(u) => ctx
                    .non_empty_string(u, &join(&p, "username"))
                    .and_then(|u| {
                        if u.contains(':') {
                            // Basic credentials are "user:password": a colon cannot be told apart.
                            ctx.error(u_mark(&b), &join(&p, "username"), "must not contain ':'");
                            None
                        } else {
                            Some(u)
                        }
                    }),
                None => {
                    ctx.error(b.mark, &p, "missing required key \"username\"");
                    None
                }
            };
            let password = secret(ctx, &b, &p, "password");
            Some(UiAuth::Basic {
                username: username?,
                password: password?,
            })
        }
        _ => {
            ctx.error(m.mark, path, "give exactly one of: bearer, basic");
            None
        }
    }
}

fn u_mark(m: &crate::config::decode::MapView) -> crate::config::yaml::Mark {
    m.get("username").map_or(m.mark, |n| n.mark)
}

pub fn decode_ui(ctx: &mut Ctx, node: &Node, out: &mut Ui) {
    let Some(m) = ctx.map(node, "ui", &["enabled", "max_stream_clients", "auth"]) else {
        return;
    };
    if let Some(v) = m.get("enabled").and_then(|n| ctx.bool(n, "ui.enabled")) {
        out.enabled = v;
    }
    if let Some(n) = m.get("max_stream_clients") {
        match ctx.u64(n, "ui.max_stream_clients") {
            Some(v) if (1..=10_000).contains(&v) => out.max_stream_clients = v as usize,
            Some(_) => ctx.error(
                n.mark,
                "ui.max_stream_clients",
                "must be between 1 and 10000",
            ),
            None => {}
        }
    }
    if let Some(n) = m.get("auth") {
        out.auth = decode_auth(ctx, n);
    }
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_default_serves_the_page_without_auth() {
        let ui = Config::default().ui;
        assert!(ui.enabled);
        assert_eq!(ui.max_stream_clients, 16);
        assert_eq!(ui.auth, None);
    }

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert!(!cfg.ui.enabled);
        assert_eq!(cfg.ui.max_stream_clients, 3);
        assert_eq!(
            cfg.ui.auth,
            Some(UiAuth::Basic {
                username: "oncall".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            format!("{:?}", cfg.ui.auth),
            "Some(Basic(oncall, <redacted>))"
        );
        let bearer =
            Config::parse("ui:\n  auth:\n    bearer: { token: abc }\n", "t", &|_| None).unwrap();
        assert_eq!(
            bearer.ui.auth,
            Some(UiAuth::Bearer {
                token: "abc".into()
            })
        );
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:12: ui.enabled: expected true or false",
                "3:23: ui.max_stream_clients: must be between 1 and 10000",
                "5:5: ui.auth: give exactly one of: bearer, basic",
            ]
        );
        // Every problem of one section at once, each at its place.
        assert_eq!(
            testdata_problems("ui:\n  auth:\n    basic: { username: \"a:b\", password_file: /nonexistent/pw, pasword: x }\n"),
            [
                "3:24: ui.auth.basic.username: must not contain ':'",
                "3:46: ui.auth.basic.password_file: file \"/nonexistent/pw\" does not exist or is not a file",
                "3:63: ui.auth.basic: unknown key \"pasword\" (expected one of: username, password, password_file)",
            ]
        );
        assert_eq!(
            testdata_problems("ui:\n  auth:\n    bearer: {}\n"),
            ["3:13: ui.auth.bearer: give exactly one of: token, token_file"]
        );
    }
}
