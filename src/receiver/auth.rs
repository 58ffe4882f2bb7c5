//! Bearer-token authentication for both receivers, public tokens included: a public
//! token is valid only with an `Origin` it allows (so only browsers on those pages can
//! use it), and its requests are rate-limited by the receiver.

use super::cors::Origins;
use crate::config::BearerToken;
use std::sync::Arc;

#[derive(Debug)]
struct Token {
    secret: Vec<u8>,
    tenant: Tenant,
    /// `Some` for a public token: the origins it is valid from.
    public: Option<Origins>,
}

#[derive(Debug, Default)]
pub struct Auth {
    tokens: Vec<Token>,
}

/// A request authenticated with a public token: its sender must be rate-limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublicClient;

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
                .map(|t| Token {
                    secret: t.token.as_bytes().to_vec(),
                    tenant: t.tenant.as_deref().map(Arc::from),
                    public: t.public.then(|| Origins::new(&t.allowed_origins)),
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks an `Authorization` header value. `Ok(tenant)` when allowed.
    pub fn check(&self, header: Option<&[u8]>) -> Result<Tenant, &'static str> {
        self.check_from(header, None).map(|(tenant, _)| tenant)
    }

    /// Checks an `Authorization` header value sent with `origin` (the `Origin`
    /// header). `Ok((tenant, public))` when allowed; `public` says the token was a
    /// public one.
    pub fn check_from(
        &self,
        header: Option<&[u8]>,
        origin: Option<&[u8]>,
    ) -> Result<(Tenant, bool), &'static str> {
        if !self.enabled() {
            return Ok((None, false));
        }
        let Some(h) = header else {
            return Err("missing bearer token");
        };
        let token = match h.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"bearer ") => h[7..].trim_ascii(),
            _ => return Err("the Authorization header is not a bearer token"),
        };
        // Check every token, so the time taken does not depend on which one matched.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if constant_time_eq(&t.secret, token) {
                found = Some(t);
            }
        }
        let t = found.ok_or("invalid bearer token")?;
        match &t.public {
            None => Ok((t.tenant.clone(), false)),
            Some(origins) if origin.is_some_and(|o| origins.allows(o)) => {
                Ok((t.tenant.clone(), true))
            }
            Some(_) => Err("a public token is valid only from its allowed_origins"),
        }
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
                public: false,
                allowed_origins: Vec::new(),
            },
            BearerToken {
                token: "other".into(),
                tenant: None,
                public: false,
                allowed_origins: Vec::new(),
            },
            BearerToken {
                token: "pub".into(),
                tenant: Some("web".into()),
                public: true,
                allowed_origins: vec!["https://shop.example.com".into()],
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
        // A public token needs one of its origins; a secret one does not care.
        let shop = Some(&b"https://shop.example.com"[..]);
        assert_eq!(
            auth.check_from(Some(b"Bearer pub"), shop),
            Ok((Some(Arc::from("web")), true))
        );
        let refused = Err("a public token is valid only from its allowed_origins");
        assert_eq!(auth.check_from(Some(b"Bearer pub"), None), refused);
        assert_eq!(
            auth.check_from(Some(b"Bearer pub"), Some(b"https://evil.example.net")),
            refused
        );
        assert_eq!(
            auth.check_from(Some(b"Bearer other"), shop),
            Ok((None, false))
        );
    }
}
