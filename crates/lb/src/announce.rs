//! Whether a `bgp_announce` block's prefixes are announced: while every virtual server it
//! tracks has its quorum and every tracker it follows is up (a `reverse` one: down). The
//! daemon turns each change into a route added to or removed from the table the BGP speaker
//! imports.

/// One announcement's conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    services: Vec<bool>,
    trackers: Vec<bool>,
    reverse: Vec<bool>,
}

impl Gate {
    /// `services` tracked virtual servers' quorum states, and the trackers' states with their
    /// `reverse` flags.
    pub fn new(services: Vec<bool>, trackers: Vec<(bool, bool)>) -> Gate {
        let (trackers, reverse) = trackers.into_iter().unzip();
        Gate {
            services,
            trackers,
            reverse,
        }
    }

    /// Whether the prefixes are announced now.
    pub fn up(&self) -> bool {
        self.services.iter().all(|s| *s)
            && self
                .trackers
                .iter()
                .zip(&self.reverse)
                .all(|(up, reverse)| up != reverse)
    }

    /// Virtual server `i` gained (`true`) or lost its quorum; the new answer of [`Gate::up`]
    /// when it changed.
    pub fn set_service(&mut self, i: usize, up: bool) -> Option<bool> {
        self.set(|g| g.services.get_mut(i), up)
    }

    /// Tracker `i` went up or down; the new answer of [`Gate::up`] when it changed.
    pub fn set_tracker(&mut self, i: usize, up: bool) -> Option<bool> {
        self.set(|g| g.trackers.get_mut(i), up)
    }

    fn set(&mut self, slot: impl FnOnce(&mut Gate) -> Option<&mut bool>, up: bool) -> Option<bool> {
        let before = self.up();
        *slot(self)? = up;
        let after = self.up();
        (before != after).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_while_every_service_has_quorum_and_every_tracker_agrees() {
        // Two services, a tracker and a reverse tracker (up means withdraw).
        let mut g = Gate::new(vec![true, true], vec![(true, false), (false, true)]);
        assert!(g.up());
        assert_eq!(g.set_service(1, false), Some(false));
        assert_eq!(g.set_service(0, false), None, "already withdrawn");
        assert_eq!(g.set_service(1, true), None, "service 0 still down");
        assert_eq!(g.set_service(0, true), Some(true));
        assert_eq!(g.set_tracker(1, true), Some(false), "reverse tracker up");
        assert_eq!(g.set_tracker(1, false), Some(true));
        assert_eq!(g.set_tracker(0, false), Some(false));
        assert_eq!(g.set_tracker(7, true), None, "no such tracker");
        assert!(!g.up());
    }

    #[test]
    fn nothing_tracked_is_always_announced() {
        assert!(Gate::new(Vec::new(), Vec::new()).up());
    }
}
