//! Which leases a worker takes, without I/O: the KCL's count balancing
//! while shards' throughput is unknown, and balancing by throughput (bytes
//! per second, reported with each renewal) once it is known, as KCL 3 does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pitwall_lease::Lease;

/// What one round of taking leases decides.
#[derive(Debug, PartialEq)]
pub(crate) struct Plan {
    pub(crate) take: Vec<Lease>,
    /// The one lease taken from a busier worker, if any.
    pub(crate) steal: Option<String>,
}

/// Whether a lease's parents are read to their end (or gone from the
/// table): then it may be read, parents before children.
pub(crate) fn parents_done(leases: &[Lease]) -> impl Fn(&Lease) -> bool + '_ {
    let by_id: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    move |l: &Lease| {
        l.parents
            .iter()
            .all(|p| by_id.get(p.as_str()).is_none_or(|pl| pl.finished()))
    }
}

/// Balancing by throughput once any active lease has reported one, else
/// by count (the KCL's): aim for an even share of the leases whose
/// parents are done; take expired ones first, and only when none is free
/// steal one from the busiest worker holding more than its share.
pub(crate) fn plan(
    leases: &[Lease],
    me: &str,
    held_count: usize,
    held: &dyn Fn(&str) -> bool,
    expired: &dyn Fn(&Lease) -> bool,
) -> Plan {
    let parents_done = parents_done(leases);
    let active: Vec<&Lease> = leases.iter().filter(|l| !l.finished()).collect();
    if active.iter().any(|l| l.throughput > 0) {
        return by_load(&active, me, held, expired, &parents_done);
    }
    let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    for l in &active {
        if let Some(o) = l.owner.as_deref()
            && !expired(l)
        {
            load.entry(o).or_default().push(l);
        }
    }
    let workers = load
        .keys()
        .copied()
        .chain([me])
        .collect::<BTreeSet<_>>()
        .len();
    let takeable = active.iter().filter(|l| parents_done(l)).count();
    let target = takeable.div_ceil(workers.max(1));
    let want = target.saturating_sub(held_count);
    let take: Vec<Lease> = active
        .iter()
        .filter(|l| !held(&l.shard_id) && expired(l) && parents_done(l))
        .take(want)
        .map(|l| (*l).clone())
        .collect();
    if want == 0 || !take.is_empty() {
        return Plan { take, steal: None };
    }
    let busiest = load
        .iter()
        .filter(|(o, _)| **o != me)
        .max_by_key(|(_, v)| v.len());
    match busiest {
        Some((_, theirs)) if theirs.len() > target => {
            match theirs
                .iter()
                .find(|l| parents_done(l) && !held(&l.shard_id))
            {
                Some(l) => Plan {
                    take: vec![(*l).clone()],
                    steal: Some(l.shard_id.clone()),
                },
                None => Plan { take, steal: None },
            }
        }
        _ => Plan { take, steal: None },
    }
}

/// A worker within this fraction of the average load is balanced.
const BALANCED: f64 = 0.10;

/// Balancing by throughput: free leases go to a worker below the average
/// load (busiest first, and ones not measured yet to whoever finds them);
/// otherwise one lease moves from a worker above the band to this one when
/// that makes the busier of the two less busy, so every move lowers the sum
/// of squared loads and moves cannot chase each other.
fn by_load(
    active: &[&Lease],
    me: &str,
    held: &dyn Fn(&str) -> bool,
    expired: &dyn Fn(&Lease) -> bool,
    parents_done: &dyn Fn(&Lease) -> bool,
) -> Plan {
    let mut load: BTreeMap<&str, (u64, Vec<&Lease>)> = BTreeMap::new();
    load.entry(me).or_default();
    for l in active {
        let owner = match l.owner.as_deref() {
            Some(o) if held(&l.shard_id) || (o != me && !expired(l)) => o,
            _ => continue,
        };
        let e = load.entry(owner).or_default();
        e.0 += l.throughput;
        e.1.push(l);
    }
    let total: u64 = active.iter().map(|l| l.throughput).sum();
    let avg = total as f64 / load.len() as f64;
    let mine = load.get(me).map_or(0, |e| e.0) as f64;
    let mut free: Vec<&Lease> = active
        .iter()
        .copied()
        .filter(|l| !held(&l.shard_id) && expired(l) && parents_done(l))
        .collect();
    free.sort_by(|a, b| {
        b.throughput
            .cmp(&a.throughput)
            .then(a.shard_id.cmp(&b.shard_id))
    });
    let mut take = Vec::new();
    let mut after = mine;
    for l in free {
        if l.throughput == 0 || after < avg {
            after += l.throughput as f64;
            take.push(l.clone());
        }
    }
    if !take.is_empty() {
        return Plan { take, steal: None };
    }
    let high = avg * (1.0 + BALANCED);
    let mut best: Option<(f64, &Lease)> = None;
    for (owner, (theirs, leases)) in &load {
        let theirs = *theirs as f64;
        if *owner == me || theirs <= high.max(mine) {
            continue;
        }
        for l in leases
            .iter()
            .filter(|l| l.throughput > 0 && parents_done(l) && !held(&l.shard_id))
        {
            let t = l.throughput as f64;
            // The move must leave the busier of the two less busy than the victim was.
            if mine + t >= theirs {
                continue;
            }
            let peak = (mine + t).max(theirs - t);
            if best.is_none_or(|(p, _)| peak < p) {
                best = Some((peak, l));
            }
        }
    }
    match best {
        Some((_, l)) if mine < avg * (1.0 - BALANCED) || mine + (l.throughput as f64) <= high => {
            Plan {
                take: vec![(*l).clone()],
                steal: Some(l.shard_id.clone()),
            }
        }
        _ => Plan {
            take: Vec::new(),
            steal: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::Checkpoint;

    fn lease(id: &str, owner: Option<&str>, parents: &[&str]) -> Lease {
        let mut l = Lease::new(id, parents.iter().map(|p| p.to_string()).collect());
        l.owner = owner.map(String::from);
        l
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.take.iter().map(|l| l.shard_id.as_str()).collect()
    }

    /// Unowned leases are expired; owned ones are alive.
    fn unowned(l: &Lease) -> bool {
        l.owner.is_none()
    }

    #[test]
    fn a_new_worker_takes_its_share_of_free_leases() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s-{i}"), None, &[]))
            .collect();
        let p = plan(&leases, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-0", "s-1", "s-2", "s-3"], "alone, it takes all");
        let mut shared = leases.clone();
        shared[0].owner = Some("b".into());
        let p = plan(&shared, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-1", "s-2"], "two workers: two each");
        assert_eq!(p.steal, None);
    }

    #[test]
    fn children_wait_for_every_parent_to_finish() {
        let mut parent = lease("p", Some("b"), &[]);
        let child = lease("c", None, &["p"]);
        let p = plan(
            &[parent.clone(), child.clone()],
            "a",
            0,
            &|_| false,
            &unowned,
        );
        assert!(p.take.is_empty(), "{p:?}");
        parent.checkpoint = Checkpoint::ShardEnd;
        let p = plan(&[parent, child], "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["c"]);
    }

    #[test]
    fn one_lease_is_stolen_from_a_worker_above_its_share() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s-{i}"), Some("b"), &[]))
            .collect();
        let p = plan(&leases, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-0"]);
        assert_eq!(p.steal.as_deref(), Some("s-0"));
        let even = [lease("s-0", Some("b"), &[]), lease("s-1", Some("a"), &[])];
        let p = plan(&even, "a", 1, &|s| s == "s-1", &unowned);
        assert_eq!(
            p,
            Plan {
                take: vec![],
                steal: None
            },
            "balanced: nothing to do"
        );
    }

    /// `held` is what this worker still runs a reader for, whatever the
    /// table says (a lease it lost whose reader has not ended): never a
    /// steal, by count or by load, which would start a second reader.
    #[test]
    fn a_lease_this_worker_still_reads_is_never_stolen() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s-{i}"), Some("b"), &[]))
            .collect();
        let p = plan(&leases, "a", 0, &|s| s == "s-0", &unowned);
        assert_eq!(p.steal.as_deref(), Some("s-1"), "by count: {p:?}");
        let mut loaded = leases.clone();
        for l in &mut loaded {
            l.throughput = 100;
        }
        loaded[0].throughput = 150;
        let p = plan(&loaded, "a", 0, &|_| false, &unowned);
        assert_eq!(
            p.steal.as_deref(),
            Some("s-0"),
            "by load, the hottest: {p:?}"
        );
        let p = plan(&loaded, "a", 0, &|s| s == "s-0", &unowned);
        assert_ne!(p.steal.as_deref(), Some("s-0"), "by load: {p:?}");
        assert!(p.take.iter().all(|l| l.shard_id != "s-0"), "{p:?}");
    }

    #[test]
    fn finished_and_held_leases_are_not_taken() {
        let mut done = lease("s-0", None, &[]);
        done.checkpoint = Checkpoint::ShardEnd;
        let mine = lease("s-1", Some("a"), &[]);
        let p = plan(&[done, mine], "a", 1, &|s| s == "s-1", &|l| {
            l.owner.is_none() || l.shard_id == "s-1"
        });
        assert!(p.take.is_empty(), "{p:?}");
    }

    /// The group-idle rule: a worker has nothing to take when each peer
    /// holds its share; one peer stopping frees leases the others take.
    #[test]
    fn three_workers_at_their_shares_have_nothing_to_take_until_one_stops() {
        let owners = ["a", "a", "b", "b", "c", "c"];
        let leases: Vec<Lease> = owners
            .iter()
            .enumerate()
            .map(|(i, o)| lease(&format!("s-{i}"), Some(o), &[]))
            .collect();
        for me in ["a", "b", "c"] {
            let mine = |s: &str| {
                leases
                    .iter()
                    .any(|l| l.shard_id == s && l.owner.as_deref() == Some(me))
            };
            let p = plan(&leases, me, 2, &mine, &unowned);
            assert!(p.take.is_empty(), "{me}: {p:?}");
        }
        // a stops and releases its two: b and c each have one to take.
        let mut after = leases.clone();
        for l in after.iter_mut().take(2) {
            l.owner = None;
        }
        for me in ["b", "c"] {
            let mine = |s: &str| {
                after
                    .iter()
                    .any(|l| l.shard_id == s && l.owner.as_deref() == Some(me))
            };
            let p = plan(&after, me, 2, &mine, &unowned);
            assert_eq!(p.take.len(), 1, "{me}: {p:?}");
        }
    }

    /// Runs every worker's plan in turn, as their take rounds would, until a
    /// whole round changes nothing; returns each worker's load.
    fn settle(leases: &mut [Lease], workers: &[&str]) -> BTreeMap<String, u64> {
        for _ in 0..100 {
            let mut moved = false;
            for me in workers {
                let snapshot = leases.to_vec();
                let mine = |s: &str| {
                    snapshot
                        .iter()
                        .any(|l| l.shard_id == s && l.owner.as_deref() == Some(*me))
                };
                let p = plan(
                    &snapshot,
                    me,
                    snapshot.iter().filter(|l| mine(&l.shard_id)).count(),
                    &mine,
                    &unowned,
                );
                assert!(
                    p.steal.is_none() || p.take.len() == 1,
                    "one steal per round: {p:?}"
                );
                for t in &p.take {
                    if let Some(l) = leases.iter_mut().find(|l| l.shard_id == t.shard_id) {
                        l.owner = Some(me.to_string());
                        moved = true;
                    }
                }
            }
            if !moved {
                break;
            }
        }
        let mut load = BTreeMap::new();
        for l in leases.iter() {
            *load.entry(l.owner.clone().unwrap_or_default()).or_default() += l.throughput;
        }
        load
    }

    fn traffic(spec: &[(u64, Option<&str>)]) -> Vec<Lease> {
        spec.iter()
            .enumerate()
            .map(|(i, (t, o))| {
                let mut l = lease(&format!("s-{i:02}"), *o, &[]);
                l.throughput = *t;
                l
            })
            .collect()
    }

    #[test]
    fn a_hot_shard_ten_times_the_others_ends_within_ten_percent_of_the_average() {
        // One shard with 10× the traffic of each of ten others, all on a.
        let mut spec = vec![(10_000, Some("a"))];
        spec.extend(std::iter::repeat_n((1_000, Some("a")), 10));
        let mut leases = traffic(&spec);
        let load = settle(&mut leases, &["a", "b"]);
        let avg = 20_000.0 / 2.0;
        for (w, l) in &load {
            assert!(
                (*l as f64 - avg).abs() <= 0.1 * avg,
                "{w}: {l} vs average {avg}: {load:?}"
            );
        }
    }

    #[test]
    fn balancing_by_count_leaves_twice_the_average_and_by_load_does_not() {
        // Three workers, each at its count share (two leases), but a holds both hot shards.
        let spec = [
            (10_000, Some("a")),
            (10_000, Some("a")),
            (1_000, Some("b")),
            (1_000, Some("b")),
            (1_000, Some("c")),
            (1_000, Some("c")),
        ];
        let avg = 24_000.0 / 3.0;
        // By count (no throughput known) this is balanced: nothing moves.
        let mut unknown = traffic(&spec);
        for l in &mut unknown {
            l.throughput = 0;
        }
        let before = unknown.clone();
        settle(&mut unknown, &["a", "b", "c"]);
        assert_eq!(unknown, before, "by count every worker keeps its two");
        let a_bytes: u64 = traffic(&spec)
            .iter()
            .filter(|l| l.owner.as_deref() == Some("a"))
            .map(|l| l.throughput)
            .sum();
        assert!(
            a_bytes as f64 > 2.0 * avg,
            "by count, a carries {a_bytes} against an average of {avg}"
        );
        // By load: no worker above the largest shard, the best these shards allow.
        let load = settle(&mut traffic(&spec), &["a", "b", "c"]);
        let peak = load.values().copied().max().unwrap_or(0);
        assert_eq!(peak, 10_000, "{load:?}");
        assert!((peak as f64) < 2.0 * avg);
    }

    #[test]
    fn free_leases_go_to_the_lightest_and_unmeasured_ones_are_taken_at_once() {
        let mut leases = traffic(&[(5_000, Some("b")), (4_000, None), (0, None), (1_000, None)]);
        let mine = |_: &str| false;
        let p = plan(&leases, "a", 0, &mine, &unowned);
        let ids: Vec<_> = p.take.iter().map(|l| l.shard_id.as_str()).collect();
        // a (0) is under the average (5,000): it takes the busiest free one,
        // is at 4,000, still under, takes the next, and the unmeasured one.
        assert_eq!(ids, ["s-01", "s-03", "s-02"]);
        assert_eq!(p.steal, None);
        // b, at the average, leaves measured free leases to lighter workers
        // but takes one not measured yet (someone must start reading it).
        leases[1].owner = Some("a".into());
        let p = plan(&leases, "b", 1, &|s| s == "s-00", &unowned);
        let ids: Vec<_> = p.take.iter().map(|l| l.shard_id.as_str()).collect();
        assert_eq!(ids, ["s-02"]);
    }
}
