//! An exactly rounded sum of floats (Shewchuk's partials, as Python's
//! `math.fsum`): the result is the exact sum rounded once, so it does not
//! depend on the order of the values, and a sum kept as its partials can
//! be extended later with the same bits as a sum of everything at once.
//! A member's total scored distance is such a sum: a run adds the rentals
//! it made final to the partials the state kept, and a full recompute over
//! all rentals must agree with it to the bit.

/// The exact sum of the values added so far, as non-overlapping partials
/// in increasing magnitude.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    pub fn new() -> ExactSum {
        ExactSum::default()
    }

    /// A sum from the partials another sum gave (`partials`).
    pub fn from_partials(partials: Vec<f64>) -> ExactSum {
        let mut s = ExactSum::new();
        for p in partials {
            s.add(p);
        }
        s
    }

    /// The partials that represent the sum exactly (few: usually one or two).
    pub fn partials(&self) -> &[f64] {
        &self.partials
    }

    /// Adds a finite value; the sum stays exact.
    pub fn add(&mut self, value: f64) {
        let mut x = value;
        let mut kept = 0;
        for k in 0..self.partials.len() {
            let mut y = self.partials[k];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// The exact sum rounded to the nearest float, ties to even.
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(&top) = p.last() else {
            return 0.0;
        };
        let (mut hi, mut lo) = (top, 0.0);
        let mut n = p.len() - 1;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // Round half to even across the partials below: when the rest has
        // the same sign as `lo`, the tie is broken towards it.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// The exactly rounded sum of `values`.
pub fn exact_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut s = ExactSum::new();
    for v in values {
        s.add(v);
    }
    s.value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sums_that_plain_addition_gets_wrong() {
        assert_eq!(exact_sum([0.1; 10]), 1.0);
        assert_ne!([0.1f64; 10].iter().sum::<f64>(), 1.0);
        assert_eq!(
            exact_sum([1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]),
            1e-100
        );
        assert_eq!(exact_sum([]), 0.0);
        // math.fsum([2.0**53, -0.5, -2.0**-54]) == 2.0**53 - 1.0
        let two53 = 2f64.powi(53);
        assert_eq!(exact_sum([two53, -0.5, -(2f64.powi(-54))]), two53 - 1.0);
        // A tie rounds to even: 2**53 + 1 is halfway, and 2**53 is even.
        assert_eq!(exact_sum([two53, 1.0]), two53);
        assert_eq!(exact_sum([two53, 1.0, 1e-100]), two53 + 2.0);
    }

    proptest! {
        #[test]
        fn the_order_of_the_values_does_not_matter(
            values in proptest::collection::vec(-1e6f64..1e6, 0..60),
            seed in any::<u64>(),
        ) {
            let mut shuffled = values.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(exact_sum(values.iter().copied()).to_bits(),
                            exact_sum(shuffled).to_bits());
        }

        #[test]
        fn a_sum_continued_from_its_partials_is_the_sum_of_all(
            a in proptest::collection::vec(0.0f64..500.0, 0..30),
            b in proptest::collection::vec(0.0f64..500.0, 0..30),
        ) {
            let mut first = ExactSum::new();
            a.iter().for_each(|&v| first.add(v));
            let mut continued = ExactSum::from_partials(first.partials().to_vec());
            b.iter().for_each(|&v| continued.add(v));
            prop_assert_eq!(continued.value().to_bits(),
                            exact_sum(a.iter().chain(&b).copied()).to_bits());
        }

        #[test]
        fn it_is_the_exact_sum_where_that_is_representable(
            ticks in proptest::collection::vec(0i64..(1 << 40), 0..50),
        ) {
            // Multiples of 2^-20 below 2^20: every partial sum is exact in i128.
            let scale = 2f64.powi(-20);
            let exact: i128 = ticks.iter().map(|&t| i128::from(t)).sum();
            let want = exact as f64 * scale;
            prop_assert_eq!(exact_sum(ticks.iter().map(|&t| t as f64 * scale)), want);
        }
    }
}
