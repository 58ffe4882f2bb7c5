//! Tower layers the gRPC and HTTP receivers share: authentication, the wire limit on a
//! request body and the time a body may take to arrive. Each is one visible layer in
//! front of both receivers. A layer only decides; the receiver answers in its own
//! protocol (status, counter, log line), since only it knows the request's format:
//! authentication leaves its verdict in the request's extensions (the receivers refuse
//! after reading the body, so the refused spans are still counted and received =
//! processed + refused holds), and the body layers make the body fail with
//! `LengthLimitError` or `TimedOut`, which the receivers downcast.

use super::auth::{Auth, PublicClient, Tenant};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
pub use http_body_util::LengthLimitError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .map(|v| v.as_bytes());
        let (verdict, public) = match self.auth.check_from(header, origin) {
            Ok((tenant, public)) => (Verdict(Ok(tenant)), public),
            Err(why) => (Verdict(Err(why)), false),
        };
        req.extensions_mut().insert(verdict);
        if public {
            req.extensions_mut().insert(PublicClient);
        }
        self.inner.call(req)
    }
}

/// Fails the request body with `LengthLimitError` once more than `max` bytes have
/// arrived, so a sender cannot make a receiver hold more than the limit. The counting is
/// http-body-util's `Limited`. Over gRPC this bounds the encoded stream; the limit on the
/// message after decompression stays tonic's `max_decoding_message_size`, because only
/// tonic sees the inflated message.
#[derive(Clone, Copy)]
pub struct BodyLimitLayer {
    max: usize,
}

impl BodyLimitLayer {
    pub fn new(max: usize) -> BodyLimitLayer {
        BodyLimitLayer { max }
    }
}

impl<S> tower::Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            max: self.max,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct BodyLimit<S> {
    max: usize,
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for BodyLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for BodyLimit<S>
where
    S: tower::Service<http::Request<http_body_util::Limited<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> S::Future {
        let max = self.max;
        self.inner
            .call(req.map(|b| http_body_util::Limited::new(b, max)))
    }
}

/// The error a body gives when it has not arrived in full within the request timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Bounds the time from a request's arrival to the end of its body: past it the body
/// fails with `TimedOut`. It bounds only the arrival, not the handling after it, which
/// takes no waiting (decode and a queue that refuses when full).
#[derive(Clone, Copy)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
}

impl RequestTimeoutLayer {
    pub fn new(timeout: Duration) -> RequestTimeoutLayer {
        RequestTimeoutLayer { timeout }
    }
}

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;
    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            timeout: self.timeout,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct RequestTimeout<S> {
    timeout: Duration,
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RequestTimeout<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for RequestTimeout<S>
where
    S: tower::Service<http::Request<TimedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> S::Future {
        let timeout = self.timeout;
        self.inner.call(req.map(|body| TimedBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }))
    }
}

/// A request body that fails with `TimedOut` once its deadline passes before its end.
pub struct TimedBody<B> {
    body: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TimedOut(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer error `E` behind a body error, however many wrappers (axum's, tonic's) the
/// body went through on its way to the receiver.
pub fn cause<'a, E: std::error::Error + 'static>(
    mut e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    loop {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        e = e.source()?;
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
            public: false,
            allowed_origins: Vec::new(),
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

    /// Reads the whole body behind `layer`, as a receiver does.
    #[derive(Clone)]
    struct Collect;

    impl<B> Service<http::Request<B>> for Collect
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        type Response = Result<Bytes, BoxError>;
        type Error = std::convert::Infallible;
        type Future =
            std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            use http_body_util::BodyExt;
            Box::pin(async move {
                Ok(req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .map_err(Into::into))
            })
        }
    }

    /// A body of the given chunks that, if `stall`, never ends after them.
    fn chunks(
        parts: &[&'static [u8]],
        stall: bool,
    ) -> http_body_util::StreamBody<
        futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>,
    > {
        use futures_util::StreamExt;
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        let s = futures_util::stream::iter(frames);
        let s = if stall {
            s.chain(futures_util::stream::pending()).boxed()
        } else {
            s.boxed()
        };
        http_body_util::StreamBody::new(s)
    }

    #[tokio::test]
    async fn the_body_limit_fails_the_body_past_the_limit_only() {
        let read = |max: usize| {
            BodyLimitLayer::new(max)
                .layer(Collect)
                .oneshot(http::Request::new(chunks(&[b"abc", b"def"], false)))
        };
        assert_eq!(
            read(6).await.unwrap().unwrap(),
            Bytes::from_static(b"abcdef")
        );
        let err = read(5).await.unwrap().unwrap_err();
        assert!(cause::<LengthLimitError>(&*err).is_some(), "{err}");
        assert_eq!(err.to_string(), "length limit exceeded");
    }

    #[tokio::test]
    async fn the_timeout_fails_a_body_that_does_not_end_in_time() {
        let read = |stall: bool| {
            RequestTimeoutLayer::new(Duration::from_millis(50))
                .layer(Collect)
                .oneshot(http::Request::new(chunks(&[b"0123456789"], stall)))
        };
        assert_eq!(
            read(false).await.unwrap().unwrap(),
            Bytes::from_static(b"0123456789")
        );
        let err = read(true).await.unwrap().unwrap_err();
        assert_eq!(
            cause::<TimedOut>(&*err),
            Some(&TimedOut(Duration::from_millis(50)))
        );
        assert_eq!(
            err.to_string(),
            "the request body did not arrive within 50ms"
        );
    }

    /// The receivers stack both layers; each error still comes through the other.
    #[tokio::test]
    async fn stacked_layers_keep_each_error_recognisable() {
        let read = |max: usize, stall: bool| {
            tower::ServiceBuilder::new()
                .layer(RequestTimeoutLayer::new(Duration::from_millis(50)))
                .layer(BodyLimitLayer::new(max))
                .service(Collect)
                .oneshot(http::Request::new(chunks(&[b"abc", b"def"], stall)))
        };
        let err = read(5, true).await.unwrap().unwrap_err();
        assert!(cause::<LengthLimitError>(&*err).is_some(), "{err}");
        let err = read(6, true).await.unwrap().unwrap_err();
        assert_eq!(
            cause::<TimedOut>(&*err),
            Some(&TimedOut(Duration::from_millis(50)))
        );
        assert_eq!(
            read(6, false).await.unwrap().unwrap(),
            Bytes::from_static(b"abcdef")
        );
    }
}
