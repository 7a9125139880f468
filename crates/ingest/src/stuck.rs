//! Shards that nobody reads: the stuck shards KCL users meet after
//! resharding (a child whose parents are done, left untaken). Every worker
//! watches the whole lease table for them, so one is noticed even when the
//! bug is in who takes what; the worker's alerts fire once one has been
//! unread for longer than the lag threshold.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pitwall_lease::Lease;

use crate::balance::parents_done;

/// Since when each readable lease has been seen unread.
#[derive(Debug, Default)]
pub(crate) struct Unread {
    since: HashMap<String, Instant>,
}

impl Unread {
    /// Folds in one listing of the lease table: `read` holds the shards a
    /// live worker reads (held here, or renewed lately by their owner).
    /// Returns the shard unread the longest, and for how long.
    pub(crate) fn observe(
        &mut self,
        leases: &[Lease],
        read: &HashSet<String>,
        now: Instant,
    ) -> Option<(String, Duration)> {
        let readable = parents_done(leases);
        let unread: HashSet<&str> = leases
            .iter()
            .filter(|l| !l.finished() && readable(l) && !read.contains(&l.shard_id))
            .map(|l| l.shard_id.as_str())
            .collect();
        self.since.retain(|s, _| unread.contains(s.as_str()));
        for s in &unread {
            self.since.entry((*s).to_string()).or_insert(now);
        }
        self.since
            .iter()
            .map(|(s, t)| (s.clone(), now.saturating_duration_since(*t)))
            .max_by_key(|(_, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::Checkpoint;

    fn lease(id: &str, parents: &[&str], done: bool) -> Lease {
        let mut l = Lease::new(id, parents.iter().map(|p| p.to_string()).collect());
        if done {
            l.checkpoint = Checkpoint::ShardEnd;
        }
        l
    }

    fn read(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_child_is_unread_only_once_its_parents_are_done() {
        let t0 = Instant::now();
        let mut u = Unread::default();
        let open_parent = [lease("p", &[], false), lease("c", &["p"], false)];
        assert_eq!(
            u.observe(&open_parent, &read(&["p"]), t0),
            None,
            "c waits on p"
        );
        let done_parent = [lease("p", &[], true), lease("c", &["p"], false)];
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            u.observe(&done_parent, &read(&[]), t1),
            Some(("c".into(), Duration::ZERO))
        );
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(
            u.observe(&done_parent, &read(&[]), t2),
            Some(("c".into(), Duration::from_secs(60))),
            "counted from when it was first seen unread"
        );
    }

    #[test]
    fn a_shard_read_again_is_forgotten_and_finished_ones_never_count() {
        let t0 = Instant::now();
        let mut u = Unread::default();
        let leases = [lease("a", &[], false), lease("b", &[], true)];
        assert!(u.observe(&leases, &read(&[]), t0).is_some());
        assert_eq!(
            u.observe(&leases, &read(&["a"]), t0 + Duration::from_secs(9)),
            None
        );
        // Unread again: the clock starts over.
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(
            u.observe(&leases, &read(&[]), t2),
            Some(("a".into(), Duration::ZERO))
        );
        assert_eq!(u.observe(&[], &read(&[]), t2), None, "empty table");
    }
}
