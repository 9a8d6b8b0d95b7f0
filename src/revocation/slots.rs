//! Who may hold a revocation stream open: at most `revocation.max_subscribers`
//! per instance, and at most `revocation.max_subscribers_per_client` of them
//! for one client, so one client's crowd cannot take every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub struct Slots {
    total: usize,
    per_client: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_client: HashMap<String, usize>,
}

/// One open stream's place; given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    client_id: String,
}

/// Why no slot was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Instance,
    Client,
}

impl Slots {
    pub fn new(total: usize, per_client: usize) -> Slots {
        Slots {
            total,
            per_client,
            held: Mutex::default(),
        }
    }

    pub fn take(self: &Arc<Self>, client_id: &str) -> Result<Slot, Full> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.total >= self.total {
            return Err(Full::Instance);
        }
        let mine = held.by_client.get(client_id).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Err(Full::Client);
        }
        held.total += 1;
        held.by_client.insert(client_id.to_owned(), mine + 1);
        Ok(Slot {
            slots: self.clone(),
            client_id: client_id.to_owned(),
        })
    }

    /// Streams open now.
    pub fn in_use(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_client.get_mut(&self.client_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_client.remove(&self.client_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_instance_and_per_client_and_given_back() {
        let slots = Arc::new(Slots::new(3, 2));
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert_eq!(slots.take("a").err(), Some(Full::Client));
        let _b1 = slots.take("b").unwrap();
        assert_eq!(slots.take("c").err(), Some(Full::Instance));
        assert_eq!(slots.in_use(), 3);
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        let _a3 = slots.take("a").unwrap();
        assert_eq!(slots.take("b").err(), Some(Full::Instance));
    }
}
