//! The client connection as the proxy reads it: every read passes through [`GuardedStream`], which
//! holds the limits Pingora has no settings for.
//!
//! - A request head gets a byte budget: reads are cut so that Pingora never buffers more than
//!   `max_request_header_bytes`; when it asks for more, the head is too large and the client gets
//!   431 and a closed connection. Memory per partial head is thereby bounded by the budget.
//! - A request head gets a *total* deadline (Pingora's read timer restarts on every byte, so a
//!   client trickling a byte now and then would never be closed): from the connection's start
//!   for its first request, from the first byte for later ones; expiry → 408 and close.
//! - An idle keep-alive connection is closed quietly after `keepalive_timeout`.
//! - A proxied request body gets a total deadline ([`ConnState::start_body_deadline`]); expiry
//!   fails the read with `TimedOut` and the proxy answers 408.
//!
//! The proxy learns of each request's boundaries through [`ConnState`], shared with the hooks.

use super::ConnectionGuard;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const HEAD_FIRST: u8 = 0;
const HEAD_REUSED: u8 = 1;
const REQUEST: u8 = 2;
const NO_DEADLINE: u64 = u64::MAX;

/// Where a connection is between requests, shared by its stream and the proxy's hooks (which run
/// on the same task; atomics only because the types must be `Sync`).
#[derive(Debug)]
pub struct ConnState {
    start: Instant,
    phase: AtomicU8,
    head_bytes: AtomicUsize,
    /// Milliseconds after `start`, or [`NO_DEADLINE`].
    deadline: AtomicU64,
    body_timed_out: AtomicBool,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    body_timeout: Duration,
    /// The client's address as an `X-Forwarded-For` value, made on the connection's first
    /// request that needs it.
    forwarded_for: std::sync::OnceLock<http::HeaderValue>,
}

impl ConnState {
    /// `X-Forwarded-For` for requests on this connection from `client`.
    pub fn forwarded_for(&self, client: std::net::IpAddr) -> http::HeaderValue {
        self.forwarded_for.get_or_init(|| forwarded_for(client)).clone()
    }

    pub fn new(header_timeout: Duration, keepalive_timeout: Duration, body_timeout: Duration) -> Self {
        ConnState {
            start: Instant::now(),
            phase: AtomicU8::new(HEAD_FIRST),
            head_bytes: AtomicUsize::new(0),
            deadline: AtomicU64::new(header_timeout.as_millis() as u64),
            body_timed_out: AtomicBool::new(false),
            header_timeout,
            keepalive_timeout,
            body_timeout,
            forwarded_for: std::sync::OnceLock::new(),
        }
    }

    fn set_deadline_in(&self, from_now: Duration) {
        let ms = self.start.elapsed().saturating_add(from_now).as_millis();
        self.deadline.store(u64::try_from(ms).unwrap_or(NO_DEADLINE - 1), Ordering::Relaxed);
    }

    fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Relaxed) {
            NO_DEADLINE => None,
            ms => Some(self.start + Duration::from_millis(ms)),
        }
    }

    /// The connection waits for the next request's head (called before each request after the
    /// first): first the keep-alive idle wait, then, from its first byte, the header deadline.
    pub fn await_next_head(&self) {
        self.phase.store(HEAD_REUSED, Ordering::Relaxed);
        self.head_bytes.store(0, Ordering::Relaxed);
        self.body_timed_out.store(false, Ordering::Relaxed);
        self.set_deadline_in(self.keepalive_timeout);
    }

    /// The request head has been parsed: no more head budget or deadline.
    pub fn head_complete(&self) {
        self.phase.store(REQUEST, Ordering::Relaxed);
        self.deadline.store(NO_DEADLINE, Ordering::Relaxed);
    }

    /// The request body must arrive whole within the body timeout from now.
    pub fn start_body_deadline(&self) {
        self.set_deadline_in(self.body_timeout);
    }

    /// The request body has arrived.
    pub fn body_complete(&self) {
        self.deadline.store(NO_DEADLINE, Ordering::Relaxed);
    }

    /// Did a read of this request's body fail because its deadline passed?
    pub fn body_timed_out(&self) -> bool {
        self.body_timed_out.load(Ordering::Relaxed)
    }

    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }
}

/// A response written by the stream itself, then the connection fails.
#[derive(Debug)]
struct Refusal {
    response: Bytes,
    written: usize,
    reason: &'static str,
}

pub struct GuardedStream {
    inner: Stream,
    conn: Arc<ConnState>,
    guard: Arc<ConnectionGuard>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    refusal: Option<Refusal>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl GuardedStream {
    pub fn new(inner: Stream, conn: Arc<ConnState>, guard: Arc<ConnectionGuard>) -> Self {
        GuardedStream {
            inner,
            conn,
            guard,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(3600))),
            armed_for: None,
            refusal: None,
        }
    }

    fn refuse(&mut self, status: u16, reason: &'static str, description: String) {
        self.guard.count_close(reason);
        tracing::info!(reason, client = ?self.guard_peer(), "client connection refused");
        self.refusal = Some(Refusal {
            response: super::raw_response(status, &description),
            written: 0,
            reason,
        });
    }

    fn guard_peer(&self) -> Option<std::net::SocketAddr> {
        self.inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet().copied()))
    }

    /// Writes the refusal, then fails the read so that Pingora drops the connection.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let refusal = self.refusal.as_mut().expect("refusing");
        while refusal.written < refusal.response.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &refusal.response[refusal.written..]))?;
            if n == 0 {
                break;
            }
            refusal.written += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, refusal.reason)))
    }

    /// A deadline passed while Pingora waited for a read.
    fn deadline_passed(&mut self, cx: &mut Context<'_>, phase: u8) -> Poll<io::Result<()>> {
        if phase == REQUEST {
            self.conn.body_timed_out.store(true, Ordering::Relaxed);
            self.conn.deadline.store(NO_DEADLINE, Ordering::Relaxed);
            self.guard.count_close("body_timeout");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request body deadline")));
        }
        if self.conn.head_bytes.load(Ordering::Relaxed) == 0 {
            // Nothing of a request arrived: an idle connection, closed quietly (EOF to Pingora).
            self.guard.count_close("idle_timeout");
            self.conn.deadline.store(NO_DEADLINE, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let timeout = self.conn.header_timeout;
        self.refuse(
            408,
            "header_timeout",
            format!("the request head did not arrive within {}", humantime(timeout)),
        );
        self.poll_refusal(cx)
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        let phase = this.conn.phase.load(Ordering::Relaxed);
        let deadline = this.conn.deadline();
        let result = if phase == REQUEST {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            match this.read_head(cx, buf, phase) {
                Some(result) => result,
                None => return this.poll_refusal(cx),
            }
        };
        match (result, deadline) {
            (Poll::Pending, Some(deadline)) => {
                // about to wait: the deadline must wake the task
                if this.deadline_expired(cx, deadline) {
                    return this.deadline_passed(cx, phase);
                }
                Poll::Pending
            }
            (Poll::Ready(Ok(())), Some(deadline)) if Instant::now() >= deadline => {
                // bytes keep coming, but too late: a trickle does not extend the deadline
                this.deadline_passed(cx, phase)
            }
            (result, _) => result,
        }
    }
}

impl GuardedStream {
    /// Reads part of a request head: never more than the budget gives Pingora. `None`: Pingora
    /// asked for more than the budget, the head is too large (the refusal is set up).
    fn read_head(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>, phase: u8) -> Option<Poll<io::Result<()>>> {
        let used = self.conn.head_bytes.load(Ordering::Relaxed);
        let budget = self.guard.max_header_bytes().saturating_sub(used);
        if budget == 0 {
            let limit = self.guard.max_header_bytes();
            self.refuse(431, "header_too_large", format!("the request head is larger than {limit} bytes"));
            return None;
        }
        let n = {
            let mut limited = buf.take(budget);
            match Pin::new(&mut self.inner).poll_read(cx, &mut limited) {
                Poll::Ready(Ok(())) => limited.filled().len(),
                other => return Some(other),
            }
        };
        // SAFETY: `limited` was a view of `buf`'s unfilled part; the inner reader initialized and
        // filled its first `n` bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        if n > 0 {
            if used == 0 && phase == HEAD_REUSED {
                // the next request started: its head must be complete within the header timeout
                self.conn.set_deadline_in(self.conn.header_timeout);
            }
            self.conn.head_bytes.fetch_add(n, Ordering::Relaxed);
        }
        Some(Poll::Ready(Ok(())))
    }

    /// Has `deadline` passed? Otherwise makes sure the timer wakes the task by then. The timer is
    /// only moved when the deadline is earlier than where it is set: on a keep-alive connection
    /// the next deadline is usually later, and an early wake-up just sets it again, so a request
    /// costs no timer operation.
    fn deadline_expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return true;
        }
        loop {
            match self.armed_for {
                Some(armed) if armed <= deadline => {}
                _ => {
                    self.timer.as_mut().reset(deadline.into());
                    self.armed_for = Some(deadline);
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // the timer fired for an earlier deadline that has since moved on
            if Instant::now() >= deadline {
                return true;
            }
            self.armed_for = None;
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// An address as a header value.
pub fn forwarded_for(client: std::net::IpAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&client.to_string()).expect("an IP address is a valid header value")
}
