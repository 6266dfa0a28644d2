//! Where a worker's idle keep-alive connections wait, for as little memory as possible.
//!
//! A parked connection is a small task waiting for its socket to become readable. It holds
//! no timer and no shutdown listener of its own: its keep-alive deadline sits in this
//! worker's [`Parking`], and one sweeper task per worker wakes each connection whose
//! deadline has passed (and all of them when shutdown begins). Ten thousand idle
//! connections then cost ten thousand small tasks and a heap of 24-byte entries.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::Shutdown;
use std::task::{Poll, Waker};

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::recv_buf::INITIAL_RECV_BYTES;
use crate::engine::Socket;

/// Stale deadline entries (of connections that woke before it) are dropped once the heap
/// holds more than this many entries beyond twice the parked connections.
const STALE_SLACK: usize = 1024;

#[derive(Default)]
pub(super) struct Parking {
    inner: RefCell<Inner>,
    /// Woken when a deadline is added to an empty heap.
    added: Notify,
}

#[derive(Default)]
struct Inner {
    slots: Slab<Slot>,
    /// Earliest deadline first: (deadline, generation, slot key).
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    next_gen: u32,
}

struct Slot {
    /// Tells this parking apart from an earlier one that used the same slot.
    generation: u32,
    expired: bool,
    waker: Option<Waker>,
}

/// A connection's place in [`Parking`]; leaving it (drop) frees the place.
pub(super) struct Ticket<'a> {
    parking: &'a Parking,
    key: u32,
}

impl Parking {
    /// Parks a connection until `deadline`.
    pub(super) fn park(&self, deadline: Instant) -> Ticket<'_> {
        let mut inner = self.inner.borrow_mut();
        let generation = inner.next_gen;
        inner.next_gen = generation.wrapping_add(1);
        let key = inner.slots.insert(Slot {
            generation,
            expired: false,
            waker: None,
        });
        let key = u32::try_from(key).expect("fewer than 2^32 parked connections");
        let was_empty = inner.deadlines.is_empty();
        inner.deadlines.push(Reverse((deadline, generation, key)));
        let live = inner.slots.len();
        if inner.deadlines.len() > 2 * live + STALE_SLACK {
            let Inner {
                slots, deadlines, ..
            } = &mut *inner;
            deadlines.retain(|Reverse((_, g, k))| {
                slots.get(*k as usize).is_some_and(|s| s.generation == *g)
            });
        }
        drop(inner);
        if was_empty {
            self.added.notify_one();
        }
        Ticket { parking: self, key }
    }

    /// Expires every connection whose deadline is at or before `now`; returns the next
    /// deadline, if any.
    fn expire_due(&self, now: Instant) -> Option<Instant> {
        let mut wake = Vec::new();
        let next = {
            let mut inner = self.inner.borrow_mut();
            loop {
                let Some(&Reverse((deadline, generation, key))) = inner.deadlines.peek() else {
                    break None;
                };
                if deadline > now {
                    break Some(deadline);
                }
                inner.deadlines.pop();
                if let Some(slot) = inner.slots.get_mut(key as usize)
                    && slot.generation == generation
                {
                    slot.expired = true;
                    wake.extend(slot.waker.take());
                }
            }
        };
        // Woken outside the borrow: a task's waker may run code that parks or leaves.
        wake.into_iter().for_each(Waker::wake);
        next
    }

    /// Expires every parked connection (shutdown).
    pub(super) fn expire_all(&self) {
        let wake: Vec<Waker> = {
            let mut inner = self.inner.borrow_mut();
            inner.deadlines.clear();
            inner
                .slots
                .iter_mut()
                .filter_map(|(_, slot)| {
                    slot.expired = true;
                    slot.waker.take()
                })
                .collect()
        };
        wake.into_iter().for_each(Waker::wake);
    }
}

impl Ticket<'_> {
    /// Whether the deadline has passed (or shutdown began); if not, `waker` is woken when
    /// it does.
    pub(super) fn expired(&self, waker: &Waker) -> bool {
        let mut inner = self.parking.inner.borrow_mut();
        let slot = &mut inner.slots[self.key as usize];
        if slot.expired {
            return true;
        }
        match &slot.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
        false
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // The slot (and the waker it may hold) is dropped after the borrow ends.
        let slot = self
            .parking
            .inner
            .borrow_mut()
            .slots
            .try_remove(self.key as usize);
        drop(slot);
    }
}

/// How a parked connection's wait ended.
enum Woke {
    Readable,
    Failed,
    /// Its keep-alive deadline passed, or shutdown began.
    Expired,
}

/// Parks the idle connection on `sock` in `parking` until it is readable, its keep-alive
/// `deadline` passes, or shutdown begins (`stopping`: it has). Returns the receive buffer
/// with what woke it, for a new serving task; `None` when the connection is to close.
pub(crate) async fn wait(
    parking: &Parking,
    stopping: bool,
    deadline: Instant,
    sock: &Socket,
) -> Option<Vec<u8>> {
    if stopping {
        return None;
    }
    let ticket = parking.park(deadline);
    let readable = sock.readable();
    tokio::pin!(readable);
    let woke = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = readable.as_mut().poll(cx) {
            return Poll::Ready(if r.is_ok() {
                Woke::Readable
            } else {
                Woke::Failed
            });
        }
        if ticket.expired(cx.waker()) {
            Poll::Ready(Woke::Expired)
        } else {
            Poll::Pending
        }
    })
    .await;
    if let Woke::Expired = woke {
        // End the pending readiness wait before the socket closes.
        sock.shutdown(Shutdown::Read);
        let _ = readable.await;
    }
    drop(ticket);
    if !matches!(woke, Woke::Readable) {
        return None;
    }
    // Read here what woke it: a client that left (the common end of an idle connection)
    // is closed without a serving task, so thousands leaving at once cost no burst of
    // tasks; a request goes to the new task already in its buffer.
    let mut buf = Vec::with_capacity(INITIAL_RECV_BYTES);
    match sock.try_recv(&mut buf) {
        Ok(0) => None,
        Ok(_) => Some(buf),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Some(buf)
        }
        Err(_) => None,
    }
}

/// The worker's sweeper: sleeps until the earliest deadline, expires what is due, and
/// expires everything when shutdown begins (`stopping` is set and `stop` notified).
pub(super) async fn sweep(parking: &Parking, stopping: &Cell<bool>, stop: &Notify) {
    loop {
        if stopping.get() {
            break;
        }
        match parking.expire_due(Instant::now()) {
            Some(next) => tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.notified() => break,
            },
            None => tokio::select! {
                _ = parking.added.notified() => {}
                _ = stop.notified() => break,
            },
        }
    }
    parking.expire_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn each_connection_expires_at_its_own_deadline() {
        let p = Parking::default();
        let t0 = Instant::now();
        let (ca, wa) = waker();
        let (cb, wb) = waker();
        // Parked out of deadline order: the heap sorts them.
        let b = p.park(t0 + Duration::from_secs(2));
        let a = p.park(t0 + Duration::from_secs(1));
        assert!(!a.expired(&wa));
        assert!(!b.expired(&wb));
        assert_eq!(p.expire_due(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            p.expire_due(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(ca.0.load(Ordering::SeqCst), 1);
        assert_eq!(cb.0.load(Ordering::SeqCst), 0);
        assert!(a.expired(&wa));
        assert!(!b.expired(&wb));
        assert_eq!(p.expire_due(t0 + Duration::from_secs(3)), None);
        assert_eq!(cb.0.load(Ordering::SeqCst), 1);
        assert!(b.expired(&wb));
    }

    #[test]
    fn a_stale_deadline_does_not_expire_the_slot_s_next_occupant() {
        let p = Parking::default();
        let t0 = Instant::now();
        let (count, w) = waker();
        // The first connection wakes (readable) before its deadline and leaves its slot;
        // the next one takes the same slot with a later deadline.
        drop(p.park(t0 + Duration::from_secs(1)));
        let next = p.park(t0 + Duration::from_secs(5));
        assert!(!next.expired(&w));
        assert_eq!(
            p.expire_due(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(5))
        );
        assert!(!next.expired(&w));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn stale_deadlines_are_bounded() {
        let p = Parking::default();
        let t0 = Instant::now();
        let _held = p.park(t0 + Duration::from_secs(60));
        // A busy connection parks and wakes again and again within its keep-alive time.
        for i in 0..100_000u64 {
            drop(p.park(t0 + Duration::from_millis(i)));
        }
        let heap = p.inner.borrow().deadlines.len();
        assert!(heap <= 2 + STALE_SLACK + 1, "{heap} deadlines kept");
    }

    #[test]
    fn shutdown_expires_everyone() {
        let p = Parking::default();
        let t0 = Instant::now();
        let (count, w) = waker();
        let tickets: Vec<_> = (0..10)
            .map(|i| p.park(t0 + Duration::from_secs(i)))
            .collect();
        for t in &tickets {
            assert!(!t.expired(&w));
        }
        p.expire_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 10);
        assert!(tickets.iter().all(|t| t.expired(&w)));
        drop(tickets);
        assert_eq!(p.inner.borrow().slots.len(), 0);
    }
}
