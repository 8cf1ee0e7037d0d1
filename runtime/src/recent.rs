//! The last items of a log, at most a capacity: what the in-memory store and transport keep
//! for tests to inspect, without growing with every item in a long-running process.

use std::collections::VecDeque;

/// The last `capacity` items pushed, oldest first. A capacity of 0 keeps none.
#[derive(Debug)]
pub(crate) struct Recent<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> Recent<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Recent {
            items: VecDeque::new(),
            capacity,
        }
    }

    /// Keeps `item`, dropping the oldest beyond the capacity.
    pub(crate) fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Keeps at most `capacity` items from now on, dropping the oldest beyond it.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.items.len() > capacity {
            self.items.pop_front();
        }
    }

    /// The items, oldest first.
    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }
}
