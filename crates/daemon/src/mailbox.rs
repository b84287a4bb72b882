//! A small queue for an instance's inputs (adverts of its VRID from the interface's reader,
//! commands from the supervisor — one queue for both): a mutex-guarded `VecDeque` and the
//! receiver's waker. A tokio channel costs
//! about 1 KB before its first message (a cache-padded shared part and a first block of 32
//! slots); with a thousand instances, two each were 2 MB. This costs about a hundred bytes,
//! and waiting on it ([`Receiver::poll_recv`]) keeps no state in the waiting task: an
//! instance's `select!` holds several waits for its whole life.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    queue: VecDeque<T>,
    /// Senders alive; the mailbox closes when the last one goes.
    senders: usize,
    /// The receiver has gone: pushes are refused.
    receiver_gone: bool,
    /// The receiver's waker while it waits.
    waker: Option<Waker>,
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
    cap: usize,
}

/// A sending side (clonable); the mailbox closes when the last one is dropped (the
/// receiver sees `None` once the queue is empty).
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving side.
pub struct Receiver<T>(Arc<Shared<T>>);

/// A mailbox holding at most `cap` messages pushed with [`Sender::push`].
pub fn mailbox<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Shared {
        inner: Mutex::new(Inner {
            queue: VecDeque::new(),
            senders: 1,
            receiver_gone: false,
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
        self.queue(v, self.0.cap)
    }

    /// Queues `v` even past the capacity (commands, which are few and must not be lost to
    /// a flood of adverts); false when the receiver has gone.
    pub fn push_always(&self, v: T) -> bool {
        self.queue(v, usize::MAX)
    }

    fn queue(&self, v: T, cap: usize) -> bool {
        let Ok(mut g) = self.0.inner.lock() else {
            return false;
        };
        if g.receiver_gone || g.queue.len() >= cap {
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
        self.0.inner.lock().map_or(true, |g| g.receiver_gone)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        if let Ok(mut g) = self.0.inner.lock() {
            g.senders += 1;
        }
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = self.0.inner.lock().ok().and_then(|mut g| {
            g.senders = g.senders.saturating_sub(1);
            if g.senders == 0 { g.waker.take() } else { None }
        });
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message, or `Pending` after registering `cx`'s waker; `Ready(None)` once
    /// every sender has gone and the queue is empty. Only the last waker registered is
    /// woken (there is one receiver).
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
        if g.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut g.waker {
            Some(w) => w.clone_from(cx.waker()),
            w @ None => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next message; `None` once every sender has gone and the queue is empty. Cancel
    /// safe (nothing is taken from the queue until it is returned).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = self.0.inner.lock().ok().map(|mut g| {
            g.receiver_gone = true;
            std::mem::take(&mut g.queue)
        });
        // Queued messages are dropped outside the lock.
        drop(dropped);
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
    async fn commands_pass_a_full_queue_and_only_the_last_sender_closes_it() {
        let (tx, mut rx) = mailbox(1);
        let reader = tx.clone();
        assert!(reader.push("advert"));
        assert!(!reader.push("advert 2"), "full for ordinary pushes");
        assert!(
            tx.push_always("stop"),
            "a command is never refused for room"
        );
        drop(tx);
        assert_eq!(rx.recv().await, Some("advert"));
        assert_eq!(rx.recv().await, Some("stop"));
        // The reader's sender is still alive: waiting now must not end the mailbox.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            rx.poll_recv(&mut cx).is_pending(),
            "ended while a sender was alive"
        );
        drop(reader);
        assert_eq!(rx.recv().await, None);
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
