//! The one predicate language behind journey matching, failure and correctness.
//!
//! In YAML a condition is a mapping whose keys must all hold (`service`, `span_name`,
//! `kind`, `status`, `attributes`, `resource_attributes`, `event`, `event_name`, `any`,
//! `all`, `not`),
//! or a list of conditions of which one must hold. Conditions are compiled once at
//! config load; evaluation reads the span through [`SpanView`] and never allocates.

use crate::config::decode::{index, join, Ctx};
use crate::config::yaml::{Kind, Node};
use crate::span::{kind, same, status, AttrKey, AttrValue, SpanView};
use regex::Regex;

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Service(StrMatch),
    SpanName(StrMatch),
    /// Bit mask over SpanKind numbers.
    Kind(u8),
    /// Bit mask over Status.code numbers.
    Status(u8),
    Attr {
        key: AttrKey,
        scope: Scope,
        test: AttrTest,
    },
    Event(StrMatch),
    /// The event name of a log record (spans have none).
    EventName(StrMatch),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Span attribute, else resource attribute.
    Any,
    Resource,
}

#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    OneOf(Vec<String>),
    Regex(Regex),
}

/// Two regexes are equal when their patterns are: what a config reload compares.
impl PartialEq for StrMatch {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (StrMatch::Exact(a), StrMatch::Exact(b)) => a == b,
            (StrMatch::OneOf(a), StrMatch::OneOf(b)) => a == b,
            (StrMatch::Regex(a), StrMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl StrMatch {
    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Exact(e) => same(e.as_bytes(), s.as_bytes()),
            StrMatch::OneOf(v) => v.iter().any(|e| same(e.as_bytes(), s.as_bytes())),
            StrMatch::Regex(r) => regex_matches(r, s),
        }
    }
}

/// Out of line: the regex engine's inlined entry would make every [`StrMatch::matches`]
/// (and so every [`Cond::eval`] node) save and restore more registers.
#[inline(never)]
fn regex_matches(r: &Regex, s: &str) -> bool {
    r.is_match(s)
}

/// A literal from the config, keeping its text so `"500"` can equal an int 500.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    pub text: String,
    pub typed: Typed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Str,
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Literal {
    fn from_scalar(text: &str, quoted: bool) -> Literal {
        let typed = if quoted {
            Typed::Str
        } else if text == "true" {
            Typed::Bool(true)
        } else if text == "false" {
            Typed::Bool(false)
        } else if let Ok(i) = text.parse::<i64>() {
            Typed::Int(i)
        } else if let Ok(f) = text.parse::<f64>() {
            Typed::Float(f)
        } else {
            Typed::Str
        };
        Literal {
            text: text.to_string(),
            typed,
        }
    }

    pub fn equals(&self, v: &AttrValue<'_>) -> bool {
        match (v, &self.typed) {
            (AttrValue::Str(s), _) => *s == self.text,
            (AttrValue::Bool(b), Typed::Bool(l)) => b == l,
            (AttrValue::Int(i), Typed::Int(l)) => i == l,
            (AttrValue::Int(_) | AttrValue::Double(_), Typed::Int(_) | Typed::Float(_)) => {
                let l = match self.typed {
                    Typed::Int(i) => i as f64,
                    Typed::Float(f) => f,
                    _ => return false,
                };
                v.as_f64() == Some(l)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub enum AttrTest {
    Exists(bool),
    Equals(Literal),
    NotEquals(Literal),
    OneOf(Vec<Literal>),
    Regex(Regex),
    Cmp(CmpOp, f64),
}

impl PartialEq for AttrTest {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (AttrTest::Exists(a), AttrTest::Exists(b)) => a == b,
            (AttrTest::Equals(a), AttrTest::Equals(b)) => a == b,
            (AttrTest::NotEquals(a), AttrTest::NotEquals(b)) => a == b,
            (AttrTest::OneOf(a), AttrTest::OneOf(b)) => a == b,
            (AttrTest::Regex(a), AttrTest::Regex(b)) => a.as_str() == b.as_str(),
            (AttrTest::Cmp(a, x), AttrTest::Cmp(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

impl Cond {
    /// Whether the span satisfies the condition. Leaves are tested inline in the loops
    /// of `all`/`any`, and attribute tests are out of line: with one recursive call per
    /// node, each saving and restoring a dozen registers, the three journeys and the
    /// failure rule of a typical config cost ~9 calls of ~45 instructions a span.
    pub fn eval<S: SpanView + ?Sized>(&self, span: &S) -> bool {
        match self {
            Cond::All(cs) => cs
                .iter()
                .all(|c| c.leaf(span).unwrap_or_else(|| c.eval(span))),
            Cond::Any(cs) => cs
                .iter()
                .any(|c| c.leaf(span).unwrap_or_else(|| c.eval(span))),
            Cond::Not(c) => !c.eval(span),
            leaf => leaf.leaf(span).unwrap_or(false),
        }
    }

    /// A leaf's outcome; `None` for `all`, `any` and `not`.
    #[inline(always)]
    fn leaf<S: SpanView + ?Sized>(&self, span: &S) -> Option<bool> {
        Some(match self {
            Cond::All(_) | Cond::Any(_) | Cond::Not(_) => return None,
            Cond::Service(m) => m.matches(span.service_name()),
            Cond::SpanName(m) => m.matches(span.name()),
            Cond::Kind(mask) => bit(span.kind()) & mask != 0,
            Cond::Status(mask) => bit(span.status_code()) & mask != 0,
            Cond::Event(m) => span.any_event(&mut |name| m.matches(name)),
            Cond::EventName(m) => span.event_name().is_some_and(|n| m.matches(n)),
            Cond::Attr { key, scope, test } => attr_holds(span, key, *scope, test),
        })
    }

    /// Every attribute key the condition reads: decoders need read no others.
    pub fn attribute_keys(&self, out: &mut Vec<String>) {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.attribute_keys(out)),
            Cond::Not(c) => c.attribute_keys(out),
            Cond::Attr { key, .. } if !out.iter().any(|k| k == key.as_str()) => {
                out.push(key.to_string())
            }
            _ => {}
        }
    }

    /// The default failure rule: status ERROR, or an HTTP server status of 500 or more.
    pub fn default_failure() -> Cond {
        let http = |key: &str| Cond::Attr {
            key: AttrKey::new(key),
            scope: Scope::Any,
            test: AttrTest::Cmp(CmpOp::Gte, 500.0),
        };
        Cond::Any(vec![
            Cond::Status(bit(status::ERROR)),
            http("http.response.status_code"),
            http("http.status_code"),
        ])
    }
}

#[inline(never)]
fn attr_holds<S: SpanView + ?Sized>(
    span: &S,
    key: &AttrKey,
    scope: Scope,
    test: &AttrTest,
) -> bool {
    let value = match scope {
        Scope::Any => span.attr_key(key),
        Scope::Resource => span.resource_attr_key(key),
    };
    match (test, value) {
        (AttrTest::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (AttrTest::Equals(l), Some(v)) => l.equals(&v),
        (AttrTest::NotEquals(l), Some(v)) => !l.equals(&v),
        (AttrTest::OneOf(ls), Some(v)) => ls.iter().any(|l| l.equals(&v)),
        (AttrTest::Regex(r), Some(AttrValue::Str(s))) => r.is_match(s),
        (AttrTest::Regex(_), Some(_)) => false,
        (AttrTest::Cmp(op, limit), Some(v)) => match v.as_f64() {
            None => false,
            Some(x) => match op {
                CmpOp::Gt => x > *limit,
                CmpOp::Gte => x >= *limit,
                CmpOp::Lt => x < *limit,
                CmpOp::Lte => x <= *limit,
            },
        },
    }
}

fn bit(n: i32) -> u8 {
    if (0..8).contains(&n) {
        1 << n
    } else {
        0
    }
}

const COND_KEYS: &[&str] = &[
    "service",
    "span_name",
    "kind",
    "status",
    "attributes",
    "resource_attributes",
    "event",
    "event_name",
    "any",
    "all",
    "not",
];
const ATTR_KEYS: &[&str] = &[
    "key",
    "equals",
    "not_equals",
    "one_of",
    "regex",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
];

/// Compiles a condition, reporting every problem into `ctx`.
pub fn compile(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Cond> {
    match &node.kind {
        Kind::Seq(items) => {
            if items.is_empty() {
                ctx.error(node.mark, path, "an empty list of conditions never matches");
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match compile(ctx, item, &index(path, i)) {
                    Some(c) => out.push(c),
                    None => ok = false,
                }
            }
            ok.then_some(Cond::Any(out))
        }
        Kind::Map(_) => {
            let m = ctx.map(node, path, COND_KEYS)?;
            let mut parts = Vec::new();
            let mut ok = true;
            fn add(parts: &mut Vec<Cond>, ok: &mut bool, c: Option<Cond>) {
                match c {
                    Some(c) => parts.push(c),
                    None => *ok = false,
                }
            }
            if let Some(n) = m.get("service") {
                add(
                    &mut parts,
                    &mut ok,
                    str_match(ctx, n, &join(path, "service")).map(Cond::Service),
                );
            }
            if let Some(n) = m.get("span_name") {
                add(
                    &mut parts,
                    &mut ok,
                    str_match(ctx, n, &join(path, "span_name")).map(Cond::SpanName),
                );
            }
            if let Some(n) = m.get("kind") {
                add(
                    &mut parts,
                    &mut ok,
                    mask(ctx, n, &join(path, "kind"), KINDS).map(Cond::Kind),
                );
            }
            if let Some(n) = m.get("status") {
                add(
                    &mut parts,
                    &mut ok,
                    mask(ctx, n, &join(path, "status"), STATUSES).map(Cond::Status),
                );
            }
            if let Some(n) = m.get("event") {
                add(
                    &mut parts,
                    &mut ok,
                    str_match(ctx, n, &join(path, "event")).map(Cond::Event),
                );
            }
            if let Some(n) = m.get("event_name") {
                add(
                    &mut parts,
                    &mut ok,
                    str_match(ctx, n, &join(path, "event_name")).map(Cond::EventName),
                );
            }
            for (key, scope) in [
                ("attributes", Scope::Any),
                ("resource_attributes", Scope::Resource),
            ] {
                if let Some(n) = m.get(key) {
                    let p = join(path, key);
                    if let Some(items) = ctx.seq(n, &p) {
                        for (i, item) in items.iter().enumerate() {
                            add(
                                &mut parts,
                                &mut ok,
                                attr_test(ctx, item, &index(&p, i), scope),
                            );
                        }
                    } else {
                        ok = false;
                    }
                }
            }
            for key in ["any", "all"] {
                if let Some(n) = m.get(key) {
                    let p = join(path, key);
                    match ctx.seq(n, &p) {
                        Some([]) => {
                            ctx.error(n.mark, &p, "must list at least one condition");
                            ok = false;
                        }
                        Some(items) => {
                            let mut inner = Vec::new();
                            for (i, item) in items.iter().enumerate() {
                                match compile(ctx, item, &index(&p, i)) {
                                    Some(c) => inner.push(c),
                                    None => ok = false,
                                }
                            }
                            parts.push(if key == "any" {
                                Cond::Any(inner)
                            } else {
                                Cond::All(inner)
                            });
                        }
                        None => ok = false,
                    }
                }
            }
            if let Some(n) = m.get("not") {
                match compile(ctx, n, &join(path, "not")) {
                    Some(c) => parts.push(Cond::Not(Box::new(c))),
                    None => ok = false,
                }
            }
            if parts.is_empty() && ok {
                ctx.error(
                    node.mark,
                    path,
                    "a condition needs at least one of: ".to_string() + &COND_KEYS.join(", "),
                );
                return None;
            }
            if !ok {
                return None;
            }
            Some(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Cond::All(parts)
            })
        }
        _ => {
            ctx.error(
                node.mark,
                path,
                format!(
                    "expected a condition (a mapping or a list), got {}",
                    node.describe()
                ),
            );
            None
        }
    }
}

const KINDS: &[(&str, i32)] = &[
    ("unspecified", kind::UNSPECIFIED),
    ("internal", kind::INTERNAL),
    ("server", kind::SERVER),
    ("client", kind::CLIENT),
    ("producer", kind::PRODUCER),
    ("consumer", kind::CONSUMER),
];
const STATUSES: &[(&str, i32)] = &[
    ("unset", status::UNSET),
    ("ok", status::OK),
    ("error", status::ERROR),
];

fn mask(ctx: &mut Ctx, node: &Node, path: &str, names: &[(&str, i32)]) -> Option<u8> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = 0u8;
    let mut ok = true;
    for item in items {
        let Some(s) = ctx.string(item, path) else {
            ok = false;
            continue;
        };
        let lower = s.to_ascii_lowercase();
        let lower = lower
            .trim_start_matches("span_kind_")
            .trim_start_matches("status_code_");
        match names.iter().find(|(n, _)| *n == lower) {
            Some((_, v)) => out |= bit(*v),
            None => {
                let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                ctx.error(
                    item.mark,
                    path,
                    format!(
                        "unknown value \"{s}\" (expected one of: {})",
                        all.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub fn regex(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Regex> {
    let pattern = ctx.string(node, path)?;
    match Regex::new(&pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            let detail = e.to_string();
            // The regex error ends with the one line that says what is wrong.
            let last = detail
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            ctx.error(
                node.mark,
                path,
                format!("invalid regex \"{pattern}\": {last}"),
            );
            None
        }
    }
}

/// A plain string is an exact match; `{regex: ...}` or `{one_of: [...]}` otherwise.
fn str_match(ctx: &mut Ctx, node: &Node, path: &str) -> Option<StrMatch> {
    match &node.kind {
        Kind::Scalar(s, _) => Some(StrMatch::Exact(s.clone())),
        Kind::Map(_) => {
            let m = ctx.map(node, path, &["regex", "one_of"])?;
            match (m.get("regex"), m.get("one_of")) {
                (Some(r), None) => regex(ctx, r, &join(path, "regex")).map(StrMatch::Regex),
                (None, Some(list)) => {
                    let p = join(path, "one_of");
                    let items = ctx.seq(list, &p)?;
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        out.push(ctx.string(item, &index(&p, i))?);
                    }
                    Some(StrMatch::OneOf(out))
                }
                _ => {
                    ctx.error(node.mark, path, "give exactly one of: regex, one_of");
                    None
                }
            }
        }
        _ => {
            ctx.error(
                node.mark,
                path,
                format!("expected a string or a mapping, got {}", node.describe()),
            );
            None
        }
    }
}

fn literal(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Literal> {
    match &node.kind {
        Kind::Scalar(s, quoted) => Some(Literal::from_scalar(s, *quoted)),
        _ => {
            ctx.error(
                node.mark,
                path,
                format!("expected a scalar value, got {}", node.describe()),
            );
            None
        }
    }
}

fn attr_test(ctx: &mut Ctx, node: &Node, path: &str, scope: Scope) -> Option<Cond> {
    let m = ctx.map(node, path, ATTR_KEYS)?;
    let key = match m.get("key") {
        Some(k) => ctx.non_empty_string(k, &join(path, "key")),
        None => {
            ctx.error(node.mark, path, "missing required key \"key\"");
            None
        }
    };
    let ops: Vec<&str> = m
        .keys()
        .filter(|k| *k != "key" && ATTR_KEYS.contains(k))
        .collect();
    if ops.len() != 1 {
        ctx.error(
            node.mark,
            path,
            "give exactly one test of: equals, not_equals, one_of, regex, exists, gt, gte, lt, lte",
        );
        return None;
    }
    let op = ops[0];
    let n = m.get(op)?;
    let p = join(path, op);
    let test = match op {
        "equals" => AttrTest::Equals(literal(ctx, n, &p)?),
        "not_equals" => AttrTest::NotEquals(literal(ctx, n, &p)?),
        "one_of" => {
            let items = ctx.seq(n, &p)?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(literal(ctx, item, &index(&p, i))?);
            }
            AttrTest::OneOf(out)
        }
        "regex" => AttrTest::Regex(regex(ctx, n, &p)?),
        "exists" => AttrTest::Exists(ctx.bool(n, &p)?),
        cmp => {
            let v = ctx.f64(n, &p)?;
            let op = match cmp {
                "gt" => CmpOp::Gt,
                "gte" => CmpOp::Gte,
                "lt" => CmpOp::Lt,
                _ => CmpOp::Lte,
            };
            AttrTest::Cmp(op, v)
        }
    };
    Some(Cond::Attr {
        key: AttrKey::new(&key?),
        scope,
        test,
    })
}
