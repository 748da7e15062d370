//! The newest-wins hand-over between two threads: live video drops, it never queues.
//!
//! A producer `put`s; if the consumer has not taken the previous value yet, that
//! value is handed back to the producer (a dropped frame, and a buffer to reuse).
//!
//! ```
//! use std::time::Duration;
//! use livestream::media::slot::{Slot, Taken};
//!
//! let slot = Slot::default();
//! assert_eq!(slot.put("frame 1"), None);
//! // The consumer was slow: frame 1 comes back to the producer, unseen.
//! assert_eq!(slot.put("frame 2"), Some("frame 1"));
//! assert_eq!(slot.take(Duration::ZERO), Taken::Value("frame 2"));
//! ```

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What [`Slot::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Value(T),
    /// Nothing arrived in time.
    Timeout,
    /// The producer is gone and the slot is empty.
    Closed,
}

pub struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    value: Option<T>,
    closed: bool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            state: Mutex::new(State {
                value: None,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers the newest value. Returns the value it replaced, which the consumer
    /// never saw, so the caller can count the drop and reuse its buffer.
    pub fn put(&self, value: T) -> Option<T> {
        let old = self.lock().value.replace(value);
        self.ready.notify_one();
        old
    }

    /// Takes the newest value, waiting up to `timeout` for one.
    pub fn take(&self, timeout: Duration) -> Taken<T> {
        let guard = self.lock();
        let (mut guard, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |s| s.value.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        match guard.value.take() {
            Some(v) => Taken::Value(v),
            None if guard.closed => Taken::Closed,
            None => Taken::Timeout,
        }
    }

    /// No more values will come; a waiting consumer wakes up. A value still in the
    /// slot can still be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn newest_wins_and_old_comes_back() {
        let s = Slot::default();
        assert_eq!(s.put(1), None);
        assert_eq!(s.put(2), Some(1));
        assert_eq!(s.take(Duration::ZERO), Taken::Value(2));
        assert_eq!(s.take(Duration::from_millis(1)), Taken::Timeout);
        s.put(3);
        s.close();
        assert_eq!(s.take(Duration::ZERO), Taken::Value(3));
        assert_eq!(s.take(Duration::from_secs(10)), Taken::Closed);
    }

    #[test]
    fn wakes_a_waiting_consumer() {
        let s = Arc::new(Slot::default());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.take(Duration::from_secs(30)));
        s.put(42);
        assert_eq!(t.join().unwrap(), Taken::Value(42));
    }
}
