//! Tower layers the gRPC and HTTP receivers share. Authentication is one visible
//! layer in front of both: it checks the `authorization` header (gRPC metadata is an
//! HTTP/2 header) once and leaves its verdict in the request's extensions. The
//! receivers answer a refusal in their own protocol after reading the body, so the
//! refused spans are still counted (received = processed + refused).

use super::auth::{Auth, Tenant};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The authentication layer's verdict on one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict(pub Result<Tenant, &'static str>);

impl Verdict {
    /// The verdict the layer left on a request; a request that bypassed the layer is
    /// refused, so a wiring mistake cannot open a receiver.
    pub fn of(extensions: &http::Extensions) -> Verdict {
        extensions
            .get::<Verdict>()
            .cloned()
            .unwrap_or(Verdict(Err("the request was not authenticated")))
    }
}

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            auth: self.auth.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    auth: Arc<Auth>,
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for AuthService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let verdict = Verdict(self.auth.check(header));
        req.extensions_mut().insert(verdict);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BearerToken;
    use tower::{Layer, Service, ServiceExt};

    #[derive(Clone)]
    struct Echo;

    impl Service<http::Request<()>> for Echo {
        type Response = Verdict;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Verdict, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(Verdict::of(req.extensions())))
        }
    }

    fn verdict(auth: &Arc<Auth>, header: Option<&str>) -> Verdict {
        let mut req = http::Request::new(());
        if let Some(h) = header {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, h.parse().unwrap());
        }
        let svc = AuthLayer::new(auth.clone()).layer(Echo);
        futures_util::FutureExt::now_or_never(svc.oneshot(req))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_layer_leaves_the_verdict_for_the_receiver() {
        let auth = Arc::new(Auth::new(&[BearerToken {
            token: "s3cret".into(),
            tenant: Some("shop".into()),
        }]));
        assert_eq!(
            verdict(&auth, Some("Bearer s3cret")),
            Verdict(Ok(Some(Arc::from("shop"))))
        );
        assert_eq!(
            verdict(&auth, Some("Bearer wrong")),
            Verdict(Err("invalid bearer token"))
        );
        assert_eq!(verdict(&auth, None), Verdict(Err("missing bearer token")));
        assert_eq!(
            Verdict::of(&http::Extensions::new()),
            Verdict(Err("the request was not authenticated"))
        );
    }
}
