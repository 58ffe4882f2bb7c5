//! A YAML tree that remembers where every node came from.
//!
//! serde-based decoders stop at the first error and lose positions once a value
//! is converted; cerflow validates the whole file and reports every problem with
//! its line and column, so it decodes from this marked tree instead.
//! Kept over serde_yaml on purpose: every config problem at once, each with line:column.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        Mark {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    /// The text, and whether it was quoted (a quoted `"false"` is a string, not a bool).
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub mark: Mark,
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Scalar(..) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// Pending key for each open mapping, in step with `stack`.
    keys: Vec<Option<Node>>,
    root: Option<Node>,
    anchors: Vec<(usize, Node)>,
    /// The anchor of each open sequence or mapping (0 for none), in step with `stack`.
    open_anchors: Vec<usize>,
    alias_error: Option<(Mark, &'static str)>,
    /// Nodes copied by alias expansion so far: nested aliases can double at every level
    /// ("billion laughs"), so expansion stops at a budget.
    expanded: usize,
}

/// Nodes alias expansion may copy in one document.
const MAX_EXPANDED_NODES: usize = 100_000;

fn size(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Seq(items) => items.iter().map(size).sum(),
        Kind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        self.attach(node);
    }

    fn attach(&mut self, node: Node) {
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => {
                let slot = self.keys.last_mut().expect("keys track stack");
                match slot.take() {
                    None => {
                        // A block mapping's start event is marked after its first key;
                        // the first key's own place is where a reader looks.
                        if entries.is_empty() {
                            parent.mark = node.mark;
                        }
                        *slot = Some(node)
                    }
                    Some(key) => entries.push((key, node)),
                }
            }
            _ => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let mark = Mark::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let kind =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Kind::Null
                    } else {
                        Kind::Scalar(text, quoted)
                    };
                self.push_value(Node { kind, mark }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Node {
                    kind: Kind::Seq(Vec::new()),
                    mark,
                });
                self.keys.push(None);
                self.open_anchors.push(anchor);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Node {
                    kind: Kind::Map(Vec::new()),
                    mark,
                });
                self.keys.push(None);
                self.open_anchors.push(anchor);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.keys.pop();
                let anchor = self.open_anchors.pop().unwrap_or(0);
                if let Some(done) = self.stack.pop() {
                    self.push_value(done, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    self.expanded += size(node);
                    if self.expanded > MAX_EXPANDED_NODES {
                        self.alias_error
                            .get_or_insert((mark, "aliases expand to too many nodes"));
                        return;
                    }
                    let node = node.clone();
                    self.attach(node);
                }
                None => {
                    self.alias_error
                        .get_or_insert((mark, "alias refers to an unknown anchor"));
                }
            },
            _ => {}
        }
    }
}

/// Parses one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, (Mark, String)> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        (
            Mark {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            e.info().to_string(),
        )
    })?;
    if let Some((mark, why)) = builder.alias_error {
        return Err((mark, why.into()));
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Null,
        mark: Mark { line: 1, col: 1 },
    }))
}
