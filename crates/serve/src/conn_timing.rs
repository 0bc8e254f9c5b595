//! HTTP/1.1 connection timing: slow-client protection that is not an idle timeout.
//!
//! hyper's `header_read_timeout` starts the moment a keep-alive connection goes idle
//! after a response, not when the next request's first byte arrives. Used alone it is
//! an idle timeout of the same length (10 s): a client's pooled connection, idle for
//! just under it, that starts its next request gets only what is left of the window,
//! and one idle for about the whole window races the server's close — the client has
//! sent a request on a connection that the gateway closes under it
//! (`hyper::Error(IncompleteMessage)` in the 10-minute soak, issue 11). A POST is not
//! idempotent: clients do not retry it on their own.
//!
//! Here the two are separate, per connection:
//! - **head**: a request's head must be complete within [`Timeouts::head`] of its first
//!   byte (slowloris protection, as before);
//! - **idle**: a keep-alive connection with no byte of a next request is closed after
//!   [`Timeouts::idle`] — longer than the common clients' pool idle timeouts (reqwest,
//!   hyper-util and Go: 90 s), so that they retire an idle connection before the
//!   gateway closes it, and the close-under-a-request race does not arise with them.
//!
//! How: hyper asks its timer for one sleep each time it starts waiting for a head
//! (right after the previous response). The timer given to hyper ([`HeadTimer`]) answers
//! with a sleep that ends `idle` after that moment, or `head` after the first byte read
//! since then, whichever applies; the connection's reads are observed by [`TimedIo`].
//! A connection costs one `Arc` more; a request two clock reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The two limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// From a request's first byte to its complete head.
    pub(crate) head: Duration,
    /// A keep-alive connection without a byte of a next request.
    pub(crate) idle: Duration,
}

/// What a connection's reads and its head timer share (one connection task polls both).
#[derive(Debug)]
struct Clock {
    /// When the connection was accepted: its first wait for a head starts there.
    base: Instant,
    /// No head waited for yet.
    fresh: AtomicBool,
    /// Set when hyper starts waiting for a head; the first byte read after clears it.
    armed: AtomicBool,
    /// 1 + nanoseconds after `base` of the first byte read since armed; 0: none yet.
    first_byte: AtomicU64,
}

/// One per connection: the timer for hyper and the reader wrapper share its clock.
pub(crate) fn for_connection<S>(io: S, t: Timeouts) -> (TimedIo<S>, HeadTimer) {
    let clock = Arc::new(Clock {
        base: Instant::now(),
        fresh: AtomicBool::new(true),
        armed: AtomicBool::new(true),
        first_byte: AtomicU64::new(0),
    });
    (
        TimedIo {
            inner: io,
            clock: Arc::clone(&clock),
        },
        HeadTimer { clock, t },
    )
}

/// The connection's transport, its reads observed.
#[derive(Debug)]
pub(crate) struct TimedIo<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.clock.armed.swap(false, Ordering::AcqRel) {
            let ns = u64::try_from(self.clock.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.clock.first_byte.store(ns + 1, Ordering::Release);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's timer for one connection. hyper uses its HTTP/1 server timer for the header
/// read timeout only; the deadline it passes (its start + the configured timeout) is
/// replaced by the rule above.
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer {
    clock: Arc<Clock>,
    t: Timeouts,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(Plain(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        // hyper starts waiting for a head now; the first wait of a connection started
        // when it was accepted (armed since, its first byte already counted).
        let now = if self.clock.fresh.swap(false, Ordering::AcqRel) {
            tokio::time::Instant::from_std(self.clock.base)
        } else {
            self.clock.first_byte.store(0, Ordering::Release);
            self.clock.armed.store(true, Ordering::Release);
            tokio::time::Instant::now()
        };
        Box::pin(HeadSleep {
            clock: Arc::clone(&self.clock),
            head: self.t.head,
            started: false,
            sleep: Box::pin(tokio::time::sleep_until(now + self.t.idle)),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

/// Ends `idle` after hyper started waiting, or `head` after the head's first byte.
struct HeadSleep {
    clock: Arc<Clock>,
    head: Duration,
    /// The first byte came and `sleep` was moved to its deadline.
    started: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this after every read that left the head incomplete.
        if !self.started {
            let fb = self.clock.first_byte.load(Ordering::Acquire);
            if fb != 0 {
                let first = self.clock.base + Duration::from_nanos(fb - 1);
                let deadline = tokio::time::Instant::from_std(first + self.head);
                self.started = true;
                self.sleep.as_mut().reset(deadline);
            }
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

struct Plain(Pin<Box<tokio::time::Sleep>>);

impl Future for Plain {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for Plain {}
