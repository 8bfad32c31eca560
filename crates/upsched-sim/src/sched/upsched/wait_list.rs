//! The watchdog's wait list of one tenant slot (`struct wait_list` in `host.bpf.c`): the
//! tenant's waiting tasks in the order their waits began, so that the longest wait is the
//! first entry's however many tasks wait.

use std::collections::BTreeSet;

use super::super::TaskId;
use crate::units::Time;

/// A task's place on a [`WaitList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WaitEntry {
    /// When the wait began, raised to the previous entry's (see [`WaitList::append`]).
    since: Time,
    /// Order of the append.
    sequence: u64,
}

#[derive(Debug, Default)]
pub(super) struct WaitList {
    entries: BTreeSet<(WaitEntry, TaskId)>,
    /// Appends so far; never reset, so an entry of an earlier incarnation matches none.
    appended: u64,
}

impl WaitList {
    /// Appends `task`, whose wait began at `since`. The kernel's list is in the order of its
    /// appends, and raises a start that is earlier than the last entry's (another CPU's clock)
    /// to it; the same here keeps the two in the same order.
    pub(super) fn append(&mut self, task: TaskId, since: Time) -> WaitEntry {
        let last = self.entries.last().map_or(0, |(entry, _)| entry.since);
        self.appended += 1;
        let entry = WaitEntry {
            since: since.max(last),
            sequence: self.appended,
        };
        self.entries.insert((entry, task));
        entry
    }

    /// Takes `task` off the list (nothing if `entry` is not on it).
    pub(super) fn remove(&mut self, task: TaskId, entry: WaitEntry) {
        self.entries.remove(&(entry, task));
    }

    /// The task that has waited longest, with the start of its wait.
    pub(super) fn oldest(&self) -> Option<(Time, TaskId)> {
        self.entries
            .first()
            .map(|(entry, task)| (entry.since, *task))
    }

    /// Empties the list (a new incarnation of the slot).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_wait_is_the_first_appended_still_waiting() {
        let mut list = WaitList::default();
        assert_eq!(list.oldest(), None);
        let entries: Vec<WaitEntry> = (0..5000)
            .map(|task| list.append(task, 10 + u64::from(task)))
            .collect();
        assert_eq!(list.oldest(), Some((10, 0)));
        // Waits that end in the middle, at the head and at the tail.
        list.remove(2500, entries[2500]);
        list.remove(0, entries[0]);
        list.remove(4999, entries[4999]);
        assert_eq!(list.oldest(), Some((11, 1)));
        // Removing an entry twice, or one that is not there, changes nothing.
        list.remove(0, entries[0]);
        list.remove(7, entries[8]);
        assert_eq!(list.oldest(), Some((11, 1)));
        for task in 1..2500 {
            list.remove(task, entries[task as usize]);
        }
        assert_eq!(list.oldest(), Some((2511, 2501)));
        // A task that waits again goes to the back.
        list.append(1, 9000);
        for task in 2501..4999 {
            list.remove(task, entries[task as usize]);
        }
        assert_eq!(list.oldest(), Some((9000, 1)));
    }

    #[test]
    fn a_start_before_the_last_one_is_raised_to_it_and_keeps_its_order() {
        let mut list = WaitList::default();
        let late = list.append(1, 100);
        list.append(2, 90);
        assert_eq!(list.oldest(), Some((100, 1)));
        list.remove(1, late);
        assert_eq!(list.oldest(), Some((100, 2)));
    }

    #[test]
    fn entries_of_an_earlier_incarnation_match_nothing_after_a_clear() {
        let mut list = WaitList::default();
        let old = list.append(3, 5);
        list.clear();
        let new = list.append(3, 5);
        list.remove(3, old);
        assert_eq!(list.oldest(), Some((5, 3)));
        list.remove(3, new);
        assert_eq!(list.oldest(), None);
    }
}
