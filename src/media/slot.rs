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

    /// Offers `value` unless `keep` says the value already waiting must stay
    /// (a keyframe not yet sent, when `value` depends on it). Returns what was
    /// not kept, the value replaced or `value` itself, for the caller to count
    /// as dropped and to reuse.
    pub fn offer(&self, value: T, keep: impl FnOnce(&T) -> bool) -> Option<T> {
        let mut state = self.lock();
        if state.value.as_ref().is_some_and(keep) {
            return Some(value);
        }
        let old = state.value.replace(value);
        drop(state);
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
    /// Nothing waits in the slot (the taker has the last value, or none came).
    pub fn is_empty(&self) -> bool {
        self.lock().value.is_none()
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

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
    fn offer_keeps_what_must_stay() {
        let s = Slot::default();
        assert_eq!(s.offer(10, |_| true), None, "nothing waiting: taken");
        assert_eq!(s.offer(11, |&old| old == 10), Some(11), "10 stays");
        assert_eq!(s.offer(12, |&old| old == 99), Some(10), "10 replaced");
        assert_eq!(s.take(Duration::ZERO), Taken::Value(12));
    }

    /// Whether the thread at `task` (`/proc/PID/task/TID`) sleeps in the kernel.
    fn sleeping(task: &std::path::Path) -> bool {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // "TID (NAME) STATE ...": NAME may hold anything but ends at the last ')'.
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name.split_whitespace().next() == Some("S")
    }

    /// The value is put only once the consumer sleeps in `take`, so it must be
    /// woken (`put`'s notify): without it, `take` would only notice the value at
    /// its timeout.
    #[test]
    fn wakes_a_waiting_consumer() {
        const TIMEOUT: Duration = Duration::from_secs(10);
        let s = Arc::new(Slot::default());
        let s2 = s.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(std::fs::read_link("/proc/thread-self").unwrap())
                .unwrap();
            let started = Instant::now();
            (s2.take(TIMEOUT), started.elapsed())
        });
        let task = std::path::Path::new("/proc").join(rx.recv().unwrap());
        // Nothing else can block the consumer (nobody else holds the lock), so
        // once it sleeps it is waiting on the condition variable.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sleeping(&task) {
            assert!(
                Instant::now() < deadline,
                "the consumer never started waiting"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        s.put(42);
        let (taken, waited) = t.join().unwrap();
        assert_eq!(taken, Taken::Value(42));
        assert!(
            waited < TIMEOUT / 2,
            "the consumer took {waited:?} of its {TIMEOUT:?}: put did not wake it"
        );
    }
}
