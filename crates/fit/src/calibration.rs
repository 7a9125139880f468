//! Whether a model's expected claims are right in size, and the product's
//! public claim: calibration (actual over expected overall, with a Poisson
//! interval, and the calibration slope), and the member view (claim
//! frequency of members scoring ≥ 90 against ≤ 50, as a rate ratio).

use serde::Serialize;

use crate::poisson::{Design, FitError, FitOptions, fit};
use crate::validate::Scored;

const Z95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub claims: f64,
    pub expected: f64,
    /// None when the model expects no claims at all.
    pub actual_over_expected: Option<f64>,
    /// 95 % interval of actual/expected from the Poisson interval of the
    /// claim count (Byar's approximation, within 1 % of the exact interval
    /// from about 5 claims on).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// b of log μ = a + b · log(expected), fitted by Poisson regression:
    /// 1 when the model's spread is right, below 1 when it overstates it.
    pub slope: Option<f64>,
}

/// The Poisson 95 % interval of a count k (Byar).
pub fn poisson_interval(k: f64) -> (f64, f64) {
    let low = if k <= 0.0 {
        0.0
    } else {
        k * (1.0 - 1.0 / (9.0 * k) - Z95 / (3.0 * k.sqrt())).powi(3)
    };
    let k1 = k + 1.0;
    let high = k1 * (1.0 - 1.0 / (9.0 * k1) + Z95 / (3.0 * k1.sqrt())).powi(3);
    (low.max(0.0), high)
}

pub fn calibration(rows: &[Scored]) -> Result<Calibration, FitError> {
    let claims: f64 = rows.iter().map(|r| r.claims).sum();
    let expected: f64 = rows.iter().map(|r| r.expected).sum();
    let (lo, hi) = poisson_interval(claims);
    let usable: Vec<&Scored> = rows.iter().filter(|r| r.expected > 0.0).collect();
    let slope = if claims > 0.0 && usable.len() > 2 {
        let d = Design {
            names: vec!["log_expected".into()],
            x: usable.iter().map(|r| r.expected.ln()).collect(),
            offset: vec![0.0; usable.len()],
            y: usable.iter().map(|r| r.claims).collect(),
        };
        let opts = FitOptions {
            lr_tests: false,
            ..FitOptions::default()
        };
        match fit(&d, &opts) {
            Ok(f) => Some(f.coefficients[1].estimate),
            // Every rental with the same expectation: no spread to judge.
            Err(FitError::Singular) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let ratio = |v: f64| (expected > 0.0).then(|| v / expected);
    Ok(Calibration {
        claims,
        expected,
        actual_over_expected: ratio(claims),
        ci_low: ratio(lo),
        ci_high: ratio(hi),
        slope,
    })
}

/// One member at the end of the period: score, distance and claims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberOutcome {
    pub score: Option<f64>,
    pub km: f64,
    pub claims: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub high_members: usize,
    pub high_per_1000_km: f64,
    pub low_members: usize,
    pub low_per_1000_km: f64,
    /// High members' claim frequency over low members' (0.39 reads "61 %
    /// fewer accidents"), with its 95 % interval on the log scale.
    pub rate_ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// Members scoring ≥ `high` against members scoring ≤ `low`.
pub fn member_view(members: &[MemberOutcome], high: f64, low: f64) -> MemberView {
    let group = |keep: &dyn Fn(f64) -> bool| {
        members
            .iter()
            .filter(|m| m.score.is_some_and(keep))
            .fold((0usize, 0.0, 0.0), |(n, km, c), m| {
                (n + 1, km + m.km, c + m.claims)
            })
    };
    let (hn, hkm, hc) = group(&|s| s >= high);
    let (ln, lkm, lc) = group(&|s| s <= low);
    let per = |c: f64, km: f64| if km > 0.0 { c / km * 1000.0 } else { 0.0 };
    let (hf, lf) = (per(hc, hkm), per(lc, lkm));
    let rr = (hc > 0.0 && lc > 0.0).then(|| hf / lf);
    let half = (1.0 / hc + 1.0 / lc).sqrt() * Z95;
    MemberView {
        high_members: hn,
        high_per_1000_km: hf,
        low_members: ln,
        low_per_1000_km: lf,
        rate_ratio: rr,
        ci_low: rr.map(|r| (r.ln() - half).exp()),
        ci_high: rr.map(|r| (r.ln() + half).exp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_intervals_are_close_to_the_exact_ones() {
        // Exact (Garwood) 95 % intervals: k = 10 → [4.795, 18.390]; k = 0 → [0, 3.689].
        let (lo, hi) = poisson_interval(10.0);
        assert!(
            (lo - 4.795).abs() < 0.01 && (hi - 18.390).abs() < 0.02,
            "{lo} {hi}"
        );
        let (lo, hi) = poisson_interval(0.0);
        assert!(lo == 0.0 && (hi - 3.689).abs() < 0.03, "{hi}");
    }

    fn row(expected: f64, claims: f64) -> Scored {
        Scored {
            risk: expected,
            km: 100.0,
            claims,
            expected,
        }
    }

    #[test]
    fn a_calibrated_model_has_ae_near_1_and_slope_near_1() {
        // Eight groups of 1,000 rentals; in each, exactly expectation × 1,000 claims.
        let mut rows = Vec::new();
        for k in 1..=8 {
            let e = 0.05 * f64::from(k);
            let with_claim = (e * 1000.0).round() as usize;
            rows.extend((0..1000).map(|i| row(e, f64::from(u8::from(i < with_claim)))));
        }
        let c = calibration(&rows).expect("calibration");
        assert!(
            c.actual_over_expected
                .is_some_and(|r| (r - 1.0).abs() < 1e-9),
            "{c:?}"
        );
        assert!(c.ci_low < Some(1.0) && Some(1.0) < c.ci_high);
        assert!(c.slope.is_some_and(|s| (s - 1.0).abs() < 1e-6), "{c:?}");
        // A model that overstates the spread (expectations squared, rescaled)
        // has a slope below 1.
        let spread: Vec<Scored> = rows
            .iter()
            .map(|r| Scored {
                expected: r.expected * r.expected * 4.0,
                ..*r
            })
            .collect();
        assert!(
            calibration(&spread)
                .expect("calibration")
                .slope
                .is_some_and(|s| s < 0.7)
        );
    }

    #[test]
    fn one_expectation_for_everyone_has_no_slope_and_no_claims_no_nan() {
        let rows: Vec<Scored> = (0..50)
            .map(|i| row(0.2, f64::from(u8::from(i % 5 == 0))))
            .collect();
        assert_eq!(calibration(&rows).expect("calibration").slope, None);
        let none = calibration(&[row(0.2, 0.0)]).expect("calibration");
        assert_eq!(
            (none.claims, none.slope, none.ci_low),
            (0.0, None, Some(0.0))
        );
        let nothing = Scored {
            expected: 0.0,
            ..row(0.2, 0.0)
        };
        assert_eq!(
            calibration(&[nothing])
                .expect("calibration")
                .actual_over_expected,
            None
        );
    }

    #[test]
    fn the_member_view_compares_claim_frequencies_of_the_two_groups() {
        let m = |score, km, claims| MemberOutcome {
            score: Some(score),
            km,
            claims,
        };
        let members = [
            m(95.0, 10_000.0, 4.0),
            m(91.0, 10_000.0, 4.0),
            m(40.0, 10_000.0, 10.0),
            m(50.0, 10_000.0, 10.0),
            m(70.0, 5_000.0, 9.0),
        ];
        let v = member_view(&members, 90.0, 50.0);
        assert_eq!((v.high_members, v.low_members), (2, 2));
        assert!((v.rate_ratio.unwrap_or(0.0) - 0.4).abs() < 1e-12, "{v:?}");
        assert!(v.ci_low < v.rate_ratio && v.rate_ratio < v.ci_high);
        let empty = member_view(&[], 90.0, 50.0);
        assert_eq!(empty.rate_ratio, None);
    }
}
