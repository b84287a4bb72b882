//! `vrrp_sync_group`: members move together (keepalived §1.8). A pure object fed with the
//! members' state changes; it answers with [`SyncCmd`]s for the other members.

use std::fmt;

use crate::router::{State, SyncCmd};

/// A sync group over members `0..n` (indices chosen by the caller).
#[derive(Debug, Clone)]
pub struct SyncGroup {
    name: String,
    states: Vec<State>,
    /// Members in FAULT by their own trackers.
    faulted: Vec<bool>,
}

/// A group-level event, logged in keepalived's words and used for group notify scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// `VRRP_Group(%s) Syncing instances to %s state`.
    Syncing(String, State),
}

impl fmt::Display for GroupEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupEvent::Syncing(g, s) => {
                write!(f, "VRRP_Group({g}) Syncing instances to {s} state")
            }
        }
    }
}

impl SyncGroup {
    /// A group of `members` instances, all in INIT.
    pub fn new(name: &str, members: usize) -> SyncGroup {
        SyncGroup {
            name: name.to_string(),
            states: vec![State::Init; members],
            faulted: vec![false; members],
        }
    }

    /// The group's state: MASTER if any member is, else FAULT if any is, else BACKUP/INIT.
    pub fn state(&self) -> State {
        if self.states.contains(&State::Master) {
            State::Master
        } else if self.states.contains(&State::Fault) {
            State::Fault
        } else if self.states.contains(&State::Backup) {
            State::Backup
        } else {
            State::Init
        }
    }

    /// Member `i`'s own cause of FAULT began or ended ([`crate::router::Output::OwnFault`]).
    /// When the last member's own cause ends, every member is released — the one that
    /// reported it too, which the group may hold in FAULT for another's cause that has ended
    /// meanwhile.
    pub fn own_fault(
        &mut self,
        i: usize,
        faulted: bool,
    ) -> (Vec<(usize, SyncCmd)>, Option<GroupEvent>) {
        let Some(was) = self.faulted.get(i).copied() else {
            return (Vec::new(), None);
        };
        self.faulted[i] = faulted;
        if faulted || !was || self.faulted.iter().any(|f| *f) {
            return (Vec::new(), None);
        }
        (
            (0..self.states.len())
                .map(|j| (j, SyncCmd::ClearFault))
                .collect(),
            Some(GroupEvent::Syncing(self.name.clone(), State::Backup)),
        )
    }

    /// Member `i` changed state because of something of its own (`by_sync` false) or because
    /// this group told it to (`by_sync` true). Returns the commands for the other members and
    /// the group event, if any.
    pub fn on_change(
        &mut self,
        i: usize,
        to: State,
        by_sync: bool,
    ) -> (Vec<(usize, SyncCmd)>, Option<GroupEvent>) {
        let Some(prev) = self.states.get(i).copied() else {
            return (Vec::new(), None);
        };
        self.states[i] = to;
        if by_sync {
            return (Vec::new(), None);
        }
        let others = |me: usize| (0..self.states.len()).filter(move |&j| j != me);
        let mut cmds = Vec::new();
        let event;
        match to {
            State::Fault => {
                self.faulted[i] = true;
                cmds.extend(others(i).map(|j| (j, SyncCmd::Fault)));
                event = Some(GroupEvent::Syncing(self.name.clone(), State::Fault));
            }
            State::Master => {
                cmds.extend(
                    others(i)
                        .filter(|&j| self.states[j] == State::Backup)
                        .map(|j| (j, SyncCmd::Master)),
                );
                event = Some(GroupEvent::Syncing(self.name.clone(), State::Master));
            }
            State::Backup if prev == State::Master => {
                cmds.extend(
                    others(i)
                        .filter(|&j| self.states[j] == State::Master)
                        .map(|j| (j, SyncCmd::Backup)),
                );
                event = Some(GroupEvent::Syncing(self.name.clone(), State::Backup));
            }
            // (Not when `own_fault` has already released the group for this recovery.)
            State::Backup if prev == State::Fault && self.faulted[i] => {
                self.faulted[i] = false;
                if !self.faulted.iter().any(|f| *f) {
                    cmds.extend(others(i).map(|j| (j, SyncCmd::ClearFault)));
                    event = Some(GroupEvent::Syncing(self.name.clone(), State::Backup));
                } else {
                    event = None;
                }
            }
            _ => event = None,
        }
        (cmds, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_member_fault_faults_all_and_recovery_clears_it() {
        let mut g = SyncGroup::new("G1", 3);
        for i in 0..3 {
            g.on_change(i, State::Backup, false);
        }
        let (cmds, ev) = g.on_change(1, State::Fault, false);
        assert_eq!(cmds, vec![(0, SyncCmd::Fault), (2, SyncCmd::Fault)]);
        assert_eq!(
            ev.map(|e| e.to_string()).as_deref(),
            Some("VRRP_Group(G1) Syncing instances to FAULT state")
        );
        assert_eq!(g.state(), State::Fault);
        let (cmds, _) = g.on_change(1, State::Backup, false);
        assert_eq!(
            cmds,
            vec![(0, SyncCmd::ClearFault), (2, SyncCmd::ClearFault)]
        );
    }

    #[test]
    fn two_members_faulted_at_once_are_both_released_when_both_recover() {
        let mut g = SyncGroup::new("G", 2);
        g.on_change(0, State::Backup, false);
        g.on_change(1, State::Backup, false);
        // Both fault by their own causes, each telling the other.
        g.on_change(0, State::Fault, false);
        g.on_change(1, State::Fault, false);
        // Member 0 recovers first: member 1 still faulted, nobody released.
        assert_eq!(g.own_fault(0, false), (Vec::new(), None));
        // Member 1 recovers: both released, though neither could leave FAULT by itself.
        let (cmds, ev) = g.own_fault(1, false);
        assert_eq!(
            cmds,
            vec![(0, SyncCmd::ClearFault), (1, SyncCmd::ClearFault)]
        );
        assert!(ev.is_some());
    }

    #[test]
    fn a_member_becoming_master_takes_the_backups_along() {
        let mut g = SyncGroup::new("G", 2);
        g.on_change(0, State::Backup, false);
        g.on_change(1, State::Backup, false);
        let (cmds, _) = g.on_change(0, State::Master, false);
        assert_eq!(cmds, vec![(1, SyncCmd::Master)]);
        let (cmds, _) = g.on_change(1, State::Master, true);
        assert!(cmds.is_empty());
        let (cmds, _) = g.on_change(0, State::Backup, false);
        assert_eq!(cmds, vec![(1, SyncCmd::Backup)]);
    }
}
