//! The `users` section: the attribute keys that name a customer, in order of preference.

use crate::config::decode::{index, Ctx};
use crate::config::yaml::Node;

/// OpenTelemetry's user attributes first, then a session as the weakest identity.
pub const DEFAULT_USER_KEYS: &[&str] =
    &["enduser.id", "user.id", "enduser.pseudo.id", "session.id"];

#[derive(Debug, Clone, PartialEq)]
pub struct Users {
    /// Span attribute first, then resource; the first key present names the user.
    pub keys: Vec<String>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            keys: DEFAULT_USER_KEYS.iter().map(|k| k.to_string()).collect(),
        }
    }
}

impl std::fmt::Display for Users {
    /// As `cerflow validate` lists it: the keys in order, or that users are off.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.keys.is_empty() {
            return write!(f, "none (users are not counted)");
        }
        write!(f, "{}", self.keys.join(", "))
    }
}

pub fn decode_users(ctx: &mut Ctx, node: &Node, out: &mut Users) {
    let Some(m) = ctx.map(node, "users", &["keys"]) else {
        return;
    };
    let Some(n) = m.get("keys") else {
        return;
    };
    let Some(items) = ctx.seq(n, "users.keys") else {
        return;
    };
    let mut keys: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = index("users.keys", i);
        if let Some(k) = ctx.non_empty_string(item, &p) {
            if keys.contains(&k) {
                ctx.error(item.mark, &p, format!("user key \"{k}\" is listed twice"));
            } else {
                keys.push(k);
            }
        }
    }
    // An empty list is allowed: it turns users off.
    out.keys = keys;
}

/// Cases in `testdata/`, as the Collector keeps them beside each component.
#[cfg(test)]
mod tests {
    use crate::config::{testdata_problems, Config};

    #[test]
    fn the_default_is_the_otel_user_attributes() {
        let cfg = Config::parse("{}", "t", &|_| None).unwrap();
        assert_eq!(
            cfg.users.keys,
            ["enduser.id", "user.id", "enduser.pseudo.id", "session.id"]
        );
    }

    #[test]
    fn the_valid_case_decodes() {
        let cfg = Config::parse(include_str!("testdata/valid.yaml"), "t", &|_| None).unwrap();
        assert_eq!(cfg.users.keys, ["customer.id", "enduser.id"]);
    }

    #[test]
    fn the_invalid_case_reports_every_problem_with_its_place() {
        assert_eq!(
            testdata_problems(include_str!("testdata/invalid.yaml")),
            [
                "2:19: users.keys[1]: user key \"user.id\" is listed twice",
                "2:28: users.keys[2]: must not be empty",
            ]
        );
    }
}
