//! A small queue for an instance's inputs (adverts of its VRID, commands from the
//! supervisor): a mutex-guarded `VecDeque` and the receiver's waker. A tokio channel costs
//! about 1 KB before its first message (a cache-padded shared part and a first block of 32
//! slots); with a thousand instances, two each were 2 MB. This costs about a hundred bytes,
//! and waiting on it ([`Receiver::poll_recv`]) keeps no state in the waiting task: an
//! instance's `select!` holds several waits for its whole life.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    queue: VecDeque<T>,
    closed: bool,
    /// The receiver's waker while it waits.
    waker: Option<Waker>,
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
    cap: usize,
}

/// The sending side; dropping it closes the mailbox (the receiver sees `None` once the
/// queue is empty).
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving side.
pub struct Receiver<T>(Arc<Shared<T>>);

/// A mailbox holding at most `cap` messages.
pub fn mailbox<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Shared {
        inner: Mutex::new(Inner {
            queue: VecDeque::new(),
            closed: false,
            waker: None,
        }),
        cap,
    });
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    /// Queues `v`; false (and `v` dropped) when the mailbox is full or its receiver gone.
    /// Never blocks: callable from the interface's reader thread.
    pub fn push(&self, v: T) -> bool {
        let Ok(mut g) = self.0.inner.lock() else {
            return false;
        };
        if g.closed || g.queue.len() >= self.0.cap || Arc::strong_count(&self.0) < 2 {
            return false;
        }
        g.queue.push_back(v);
        let waker = g.waker.take();
        drop(g);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Whether the receiver has gone.
    pub fn is_closed(&self) -> bool {
        Arc::strong_count(&self.0) < 2
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = self.0.inner.lock().ok().and_then(|mut g| {
            g.closed = true;
            g.waker.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message, or `Pending` after registering `cx`'s waker; `Ready(None)` once
    /// the sender has gone and the queue is empty. Only the last waker registered is woken
    /// (there is one receiver).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Ok(mut g) = self.0.inner.lock() else {
            return Poll::Ready(None);
        };
        if let Some(v) = g.queue.pop_front() {
            if g.queue.is_empty() && g.queue.capacity() > 8 {
                // A burst is over: give back what it made the queue grow to.
                g.queue.shrink_to(8);
            }
            return Poll::Ready(Some(v));
        }
        if g.closed {
            return Poll::Ready(None);
        }
        match &mut g.waker {
            Some(w) => w.clone_from(cx.waker()),
            w @ None => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next message; `None` once the sender has gone and the queue is empty. Cancel
    /// safe (nothing is taken from the queue until it is returned).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_refuses_past_capacity() {
        let (tx, mut rx) = mailbox(2);
        assert!(tx.push(1));
        assert!(tx.push(2));
        assert!(!tx.push(3), "a full mailbox refuses");
        assert_eq!(rx.recv().await, Some(1));
        assert!(tx.push(4));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(4));
    }

    #[tokio::test]
    async fn closing_ends_after_the_queue_drains() {
        let (tx, mut rx) = mailbox(4);
        assert!(tx.push("a"));
        drop(tx);
        assert_eq!(rx.recv().await, Some("a"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_receiver_gone_refuses_pushes() {
        let (tx, rx) = mailbox::<u8>(4);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert!(!tx.push(1));
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver_from_another_thread() {
        let (tx, mut rx) = mailbox(4);
        let waiting = tokio::spawn(async move { rx.recv().await });
        let pusher = std::thread::spawn(move || {
            assert!(tx.push(7u32));
            tx
        });
        assert_eq!(waiting.await.ok().flatten(), Some(7));
        drop(pusher.join());
    }

    #[tokio::test]
    async fn a_wait_cancelled_by_select_loses_nothing() {
        let (tx, mut rx) = mailbox(4);
        // The first wait is abandoned before anything arrives; the message pushed after
        // must still reach the next wait.
        tokio::select! {
            biased;
            _ = rx.recv() => panic!("nothing was pushed"),
            _ = std::future::ready(()) => {}
        }
        assert!(tx.push(5u8));
        assert_eq!(rx.recv().await, Some(5));
    }
}
