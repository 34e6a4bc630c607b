//! Which loaded models the scoring host lets go (pure). The warm set is bounded by a number of
//! models and, optionally, by their memory. A model an evaluation is using is never evicted;
//! among the idle ones the least recently used go first, candidates before champions: a
//! champion is scored again at every evaluation of its model, a candidate usually once.

use std::time::Instant;

/// A loaded model as the warm set sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub champion: bool,
    pub in_use: bool,
    pub last_used: Instant,
    /// Resident memory, when known.
    pub rss: Option<u64>,
}

/// The indexes of `entries` to evict so that at most `max_models` stay and, with `max_bytes`,
/// their memory fits. Models in use count toward the bounds but are never chosen, so the set
/// may stay over them until they are released.
pub fn evictions(entries: &[Entry], max_models: usize, max_bytes: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).filter(|&i| !entries[i].in_use).collect();
    order.sort_by_key(|&i| (entries[i].champion, entries[i].last_used));
    let mut count = entries.len();
    let mut bytes: u64 = entries.iter().filter_map(|e| e.rss).sum();
    let over =
        |count: usize, bytes: u64| count > max_models || max_bytes.is_some_and(|m| bytes > m);
    let mut out = Vec::new();
    for i in order {
        if !over(count, bytes) {
            break;
        }
        count -= 1;
        bytes -= entries[i].rss.unwrap_or(0);
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(champion: bool, in_use: bool, age_s: u64, rss: u64) -> Entry {
        Entry {
            champion,
            in_use,
            last_used: Instant::now() - Duration::from_secs(age_s),
            rss: Some(rss),
        }
    }

    #[test]
    fn idle_candidates_go_before_champions_oldest_first() {
        let e = [
            entry(true, false, 50, 10),  // an old champion
            entry(false, false, 10, 10), // a recent candidate
            entry(false, false, 40, 10), // an old candidate
            entry(false, true, 90, 10),  // the oldest, but in use
        ];
        assert_eq!(evictions(&e, 4, None), Vec::<usize>::new());
        assert_eq!(evictions(&e, 2, None), vec![2, 1]);
        assert_eq!(evictions(&e, 1, None), vec![2, 1, 0]);
        // In use is never evicted, even when the bound cannot be met.
        assert_eq!(evictions(&e, 0, None), vec![2, 1, 0]);
    }

    #[test]
    fn memory_bounds_the_set_too() {
        let e = [
            entry(true, false, 5, 700),
            entry(false, false, 1, 200),
            entry(false, false, 9, 300),
        ];
        assert_eq!(evictions(&e, 10, Some(1_200)), Vec::<usize>::new());
        assert_eq!(evictions(&e, 10, Some(1_000)), vec![2]);
        assert_eq!(evictions(&e, 10, Some(600)), vec![2, 1, 0]);
    }
}
