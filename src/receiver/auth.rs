//! Bearer-token authentication for both receivers.

use crate::config::BearerToken;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Auth {
    tokens: Vec<(Vec<u8>, Option<Arc<str>>)>,
}

/// Who sent a request: `Some(tenant)` for a token with a tenant name.
pub type Tenant = Option<Arc<str>>;

/// Compares in time that depends only on the lengths, so a timing side channel does not
/// reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(tokens: &[BearerToken]) -> Auth {
        Auth {
            tokens: tokens
                .iter()
                .map(|t| {
                    (
                        t.token.as_bytes().to_vec(),
                        t.tenant.as_deref().map(Arc::from),
                    )
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks an `Authorization` header value. `Ok(tenant)` when allowed.
    pub fn check(&self, header: Option<&[u8]>) -> Result<Tenant, &'static str> {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(h) = header else {
            return Err("missing bearer token");
        };
        let token = match h.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"bearer ") => h[7..].trim_ascii(),
            _ => return Err("the Authorization header is not a bearer token"),
        };
        // Check every token, so the time taken does not depend on which one matched.
        let mut found: Option<&Tenant> = None;
        for (t, tenant) in &self.tokens {
            if constant_time_eq(t, token) {
                found = Some(tenant);
            }
        }
        found.cloned().ok_or("invalid bearer token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_name_their_tenant() {
        let auth = Auth::new(&[
            BearerToken {
                token: "s3cret".into(),
                tenant: Some("shop".into()),
            },
            BearerToken {
                token: "other".into(),
                tenant: None,
            },
        ]);
        assert_eq!(
            auth.check(Some(b"Bearer s3cret")).unwrap().as_deref(),
            Some("shop")
        );
        assert_eq!(auth.check(Some(b"bearer other")).unwrap(), None);
        assert_eq!(
            auth.check(Some(b"Bearer s3cre")),
            Err("invalid bearer token")
        );
        assert_eq!(
            auth.check(Some(b"Basic s3cret")),
            Err("the Authorization header is not a bearer token")
        );
        assert_eq!(auth.check(None), Err("missing bearer token"));
        assert_eq!(Auth::new(&[]).check(None), Ok(None));
    }
}
