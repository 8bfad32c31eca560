//! `linux-eevdf`'s run queues: treaps of queued tasks ordered by (deadline, task), each node
//! augmented with the least virtual runtime and the least weight of its subtree.
//!
//! The least `v` of a subtree tells whether it holds an eligible task (eligibility, `v <= V`,
//! is monotone in `v`), so `pick_eevdf`'s earliest eligible deadline is one descent, as
//! Linux's rb-tree augmented with `min_vruntime` makes it; the least weight lets the balancer
//! skip subtrees with no task light enough to move. Every operation is O(log n) expected,
//! whatever the queue's length (a sorted vector cost a memmove of the whole queue per
//! insertion).
//!
//! A task is in at most one queue at a time, so the nodes live in one arena indexed by task
//! id, shared by all queues. A node's heap priority is a hash of its task id: the shape
//! depends only on the queue's contents, never on a random stream, and the simulation stays
//! deterministic.

use crate::sched::TaskId;

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node {
    deadline: i64,
    v: i64,
    weight: i64,
    prio: u32,
    left: u32,
    right: u32,
    min_v: i64,
    min_weight: i64,
    queued: bool,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            deadline: 0,
            v: 0,
            weight: 0,
            prio: 0,
            left: NIL,
            right: NIL,
            min_v: 0,
            min_weight: 0,
            queued: false,
        }
    }
}

/// One run queue: the root of its treap in the [`Forest`] and its length.
#[derive(Clone, Debug)]
pub(super) struct Queue {
    root: u32,
    len: usize,
}

impl Default for Queue {
    fn default() -> Self {
        Queue { root: NIL, len: 0 }
    }
}

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The nodes of every queue, indexed by task id.
#[derive(Clone, Debug, Default)]
pub(super) struct Forest {
    nodes: Vec<Node>,
}

/// A hash of the task id: consecutive ids get unrelated priorities.
fn priority(task: TaskId) -> u32 {
    crate::rng::mix(u64::from(task)) as u32
}

impl Forest {
    fn key(&self, n: u32) -> (i64, TaskId) {
        (self.nodes[n as usize].deadline, n)
    }

    fn update(&mut self, n: u32) {
        let (left, right) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let mut min_v = self.nodes[n as usize].v;
        let mut min_weight = self.nodes[n as usize].weight;
        for child in [left, right] {
            if child != NIL {
                min_v = min_v.min(self.nodes[child as usize].min_v);
                min_weight = min_weight.min(self.nodes[child as usize].min_weight);
            }
        }
        let node = &mut self.nodes[n as usize];
        node.min_v = min_v;
        node.min_weight = min_weight;
    }

    pub(super) fn contains(&self, task: TaskId) -> bool {
        self.nodes.get(task as usize).is_some_and(|n| n.queued)
    }

    /// Queues `task` with its deadline, virtual runtime and weight, which stay fixed while
    /// it is queued (only the running task's change, and it is not in the queue).
    pub(super) fn insert(
        &mut self,
        q: &mut Queue,
        task: TaskId,
        deadline: i64,
        v: i64,
        weight: i64,
    ) {
        let i = task as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, Node::default());
        }
        debug_assert!(!self.nodes[i].queued, "task {task} queued twice");
        self.nodes[i] = Node {
            deadline,
            v,
            weight,
            prio: priority(task),
            left: NIL,
            right: NIL,
            min_v: v,
            min_weight: weight,
            queued: true,
        };
        q.root = self.insert_at(q.root, task);
        q.len += 1;
    }

    fn insert_at(&mut self, t: u32, x: u32) -> u32 {
        if t == NIL {
            return x;
        }
        if self.nodes[x as usize].prio > self.nodes[t as usize].prio {
            let (left, right) = self.split(t, self.key(x));
            self.nodes[x as usize].left = left;
            self.nodes[x as usize].right = right;
            self.update(x);
            return x;
        }
        if self.key(x) < self.key(t) {
            let left = self.insert_at(self.nodes[t as usize].left, x);
            self.nodes[t as usize].left = left;
        } else {
            let right = self.insert_at(self.nodes[t as usize].right, x);
            self.nodes[t as usize].right = right;
        }
        self.update(t);
        t
    }

    /// Splits `t` into the keys below `key` and the others.
    fn split(&mut self, t: u32, key: (i64, TaskId)) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.key(t) < key {
            let (left, right) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = left;
            self.update(t);
            (t, right)
        } else {
            let (left, right) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = right;
            self.update(t);
            (left, t)
        }
    }

    /// Joins two treaps, every key of `a` below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let right = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = right;
            self.update(a);
            a
        } else {
            let left = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = left;
            self.update(b);
            b
        }
    }

    /// Removes `task` from `q` if it is queued there; whether it was.
    pub(super) fn remove(&mut self, q: &mut Queue, task: TaskId) -> bool {
        if !self.contains(task) {
            return false;
        }
        q.root = self.remove_at(q.root, task);
        self.nodes[task as usize].queued = false;
        q.len -= 1;
        true
    }

    fn remove_at(&mut self, t: u32, x: u32) -> u32 {
        debug_assert_ne!(t, NIL, "a queued task is in its queue");
        if t == x {
            let node = &self.nodes[t as usize];
            return self.merge(node.left, node.right);
        }
        if self.key(x) < self.key(t) {
            let left = self.remove_at(self.nodes[t as usize].left, x);
            self.nodes[t as usize].left = left;
        } else {
            let right = self.remove_at(self.nodes[t as usize].right, x);
            self.nodes[t as usize].right = right;
        }
        self.update(t);
        t
    }

    /// The earliest deadline.
    pub(super) fn first(&self, q: &Queue) -> Option<TaskId> {
        let mut t = q.root;
        if t == NIL {
            return None;
        }
        while self.nodes[t as usize].left != NIL {
            t = self.nodes[t as usize].left;
        }
        Some(t)
    }

    /// The earliest deadline among the tasks whose `v` passes `eligible`, a test monotone in
    /// `v` (true for some `v` means true for every smaller one).
    pub(super) fn first_eligible(
        &self,
        q: &Queue,
        eligible: impl Fn(i64) -> bool,
    ) -> Option<TaskId> {
        let mut t = q.root;
        if t == NIL || !eligible(self.nodes[t as usize].min_v) {
            return None;
        }
        loop {
            let node = &self.nodes[t as usize];
            if node.left != NIL && eligible(self.nodes[node.left as usize].min_v) {
                t = node.left;
            } else if eligible(node.v) {
                return Some(t);
            } else {
                // The subtree holds an eligible task, neither on the left nor here.
                t = node.right;
            }
        }
    }

    /// The latest deadline among the tasks of weight at most `max_weight` that pass `take`.
    pub(super) fn last_where(
        &self,
        q: &Queue,
        max_weight: i64,
        take: &mut impl FnMut(TaskId) -> bool,
    ) -> Option<TaskId> {
        self.last_in(q.root, max_weight, take)
    }

    fn last_in(
        &self,
        t: u32,
        max_weight: i64,
        take: &mut impl FnMut(TaskId) -> bool,
    ) -> Option<TaskId> {
        if t == NIL || self.nodes[t as usize].min_weight > max_weight {
            return None;
        }
        let node = &self.nodes[t as usize];
        if let Some(found) = self.last_in(node.right, max_weight, take) {
            return Some(found);
        }
        if node.weight <= max_weight && take(t) {
            return Some(t);
        }
        self.last_in(node.left, max_weight, take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    /// The treap answers as a sorted vector scanned in order does, over random inserts and
    /// removals in a few queues sharing the arena.
    #[test]
    fn matches_a_sorted_scan() {
        let mut rng = SimRng::stream(3, 0);
        let mut forest = Forest::default();
        let mut queues = vec![Queue::default(); 3];
        // (deadline, task) -> (v, weight), per queue.
        let mut model: Vec<std::collections::BTreeMap<(i64, TaskId), (i64, i64)>> =
            vec![Default::default(); 3];
        let mut at: Vec<Option<usize>> = vec![None; 200];
        for step in 0..20_000 {
            let task = (rng.next_u64() % 200) as TaskId;
            match at[task as usize] {
                Some(q) => {
                    let key = model[q]
                        .keys()
                        .find(|k| k.1 == task)
                        .copied()
                        .expect("modelled");
                    model[q].remove(&key);
                    assert!(forest.remove(&mut queues[q], task));
                    at[task as usize] = None;
                }
                None => {
                    let q = (rng.next_u64() % 3) as usize;
                    // Few distinct deadlines: ties are broken by task id.
                    let deadline = (rng.next_u64() % 50) as i64 - 25;
                    let v = (rng.next_u64() % 1000) as i64;
                    let weight = 1 + (rng.next_u64() % 8) as i64;
                    forest.insert(&mut queues[q], task, deadline, v, weight);
                    model[q].insert((deadline, task), (v, weight));
                    at[task as usize] = Some(q);
                }
            }
            assert!(!forest.remove(&mut Queue::default(), 200 + task));
            let bound = (rng.next_u64() % 1000) as i64;
            let max_weight = (rng.next_u64() % 9) as i64;
            for (q, queue) in queues.iter().enumerate() {
                let m = &model[q];
                assert_eq!(queue.len(), m.len());
                assert_eq!(forest.first(queue), m.keys().next().map(|k| k.1));
                let eligible = m.iter().find(|(_, (v, _))| *v <= bound).map(|(k, _)| k.1);
                assert_eq!(
                    forest.first_eligible(queue, |v| v <= bound),
                    eligible,
                    "{step}"
                );
                let odd = |t: TaskId| t % 2 == 1;
                let last = m
                    .iter()
                    .rev()
                    .find(|(k, (_, w))| *w <= max_weight && odd(k.1))
                    .map(|(k, _)| k.1);
                assert_eq!(
                    forest.last_where(queue, max_weight, &mut |t| odd(t)),
                    last,
                    "{step}"
                );
            }
        }
    }

    fn depth(forest: &Forest, t: u32) -> usize {
        if t == NIL {
            return 0;
        }
        let node = &forest.nodes[t as usize];
        1 + depth(forest, node.left).max(depth(forest, node.right))
    }

    /// A queue whose deadlines only grow (the common case: each task queued again gets a
    /// later deadline) stays O(log n) deep: 100,000 sorted inserts make a tree of depth below
    /// 4 log2 n, where an unbalanced search tree would be a list.
    #[test]
    fn sorted_inserts_stay_shallow() {
        let mut forest = Forest::default();
        let mut queue = Queue::default();
        let n = 100_000u32;
        for task in 0..n {
            forest.insert(&mut queue, task, i64::from(task), 0, 1);
        }
        let bound = 4 * (32 - n.leading_zeros()) as usize;
        assert!(
            depth(&forest, queue.root) < bound,
            "depth {}",
            depth(&forest, queue.root)
        );
        for task in (0..n).step_by(2) {
            assert!(forest.remove(&mut queue, task));
        }
        assert!(depth(&forest, queue.root) < bound);
        assert_eq!(forest.first(&queue), Some(1));
    }
}
